// --dry-run: the SQL a migration would execute, captured by a query runner that records instead of
// executing. Migrations that read the database to decide what to do see empty results.
import type { DataSource, QueryRunner } from "typeorm";
import type { MigrationFile } from "./migration-files";

export async function captureSql(dataSource: DataSource, file: MigrationFile, direction: "up" | "down"): Promise<string[]> {
  const real = dataSource.createQueryRunner();
  const statements: string[] = [];
  const recorder = Object.create(real) as QueryRunner;
  // Its EntityManager must record too: the real runner's one would run what a migration sends through it.
  Object.assign(recorder, { manager: dataSource.createEntityManager(recorder) });
  recorder.query = (async (sql: string, parameters?: unknown[]) => {
    statements.push(parameters?.length ? `${sql.trim()} -- parameters: ${JSON.stringify(parameters)}` : sql.trim());
    return [];
  }) as QueryRunner["query"];
  try {
    if (direction === "up") await file.migration.up(recorder);
    else await file.migration.down(recorder);
  } finally {
    await real.release();
  }
  return statements;
}
