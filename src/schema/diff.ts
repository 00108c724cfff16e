// TypeORM's own comparison of entities with a live database: exactly what
// `typeorm migration:generate` (and its --check) would write.
import type { DataSource, QueryRunner } from "typeorm";
import { MigrationError } from "../errors";

export interface SchemaDiff {
  up: string[];
  down: string[];
}

export interface SqlQuery {
  query: string;
  parameters?: unknown[];
}

async function log(dataSource: DataSource): Promise<{ up: SqlQuery[]; down: SqlQuery[] }> {
  const sql = await dataSource.driver.createSchemaBuilder().log();
  // TypeORM lists down queries in apply order of the up queries; a down runs them in reverse.
  return { up: sql.upQueries, down: [...sql.downQueries].reverse() };
}

export async function schemaDiff(dataSource: DataSource): Promise<{ up: SqlQuery[]; down: SqlQuery[] }> {
  return log(dataSource);
}

/**
 * TypeORM's diff against the database as it would be after `before` (e.g. the renames the user
 * named): `before` runs in a transaction that is rolled back, and TypeORM reads the schema inside
 * it. Nothing is changed; the tables `before` alters are locked (ACCESS EXCLUSIVE, waited for at
 * most `lockTimeoutMs`) while TypeORM reads the schema (generate runs against a developer's or a
 * staging database; the lock is held for the read of the catalog, not for any scan).
 *
 *   await schemaDiffAfter(ds, [`ALTER TABLE "profiles" RENAME COLUMN "phone" TO "phone_number"`], 2000)
 *   // the rest of the change: what TypeORM would write once the rename is done
 */
export async function schemaDiffAfter(dataSource: DataSource, before: string[], lockTimeoutMs: number): Promise<{ up: SqlQuery[]; down: SqlQuery[] }> {
  if (!before.length) return log(dataSource);
  const runner = dataSource.createQueryRunner();
  const create = dataSource.createQueryRunner;
  try {
    await runner.connect();
    await runner.query("BEGIN");
    await runner.query(`SET LOCAL lock_timeout = ${Math.max(1, Math.round(lockTimeoutMs))}`);
    for (const statement of before) {
      try {
        await runner.query(statement);
      } catch (error) {
        const code = (error as { driverError?: { code?: string } }).driverError?.code;
        if (code === "55P03") throw new MigrationError(`the table is busy (${statement}: no lock within ${lockTimeoutMs} ms, so the diff could not be taken): try again`);
        throw error;
      }
    }
    // The schema builder asks the DataSource for a query runner and releases it after: give it
    // this one (inside the transaction), and keep it open.
    const borrowed = Object.create(runner) as QueryRunner;
    borrowed.release = async () => undefined;
    dataSource.createQueryRunner = () => borrowed;
    return await log(dataSource);
  } finally {
    dataSource.createQueryRunner = create;
    await runner.query("ROLLBACK").catch(() => undefined);
    await runner.release();
  }
}
