// Which column type conversions PostgreSQL makes by itself (an implicit or assignment cast), asked
// of the live database rather than guessed: a temporary table with a column of the old type is
// changed to the new type without USING, in a transaction that is rolled back. PostgreSQL's own
// rules decide (lengths, arrays, domains, output conversions to strings); nothing is left behind.
// When the database cannot be asked (no TEMP privilege, an unknown type), the conservative list of
// column-type-change.ts decides.
//
//   const automatic = await automaticCasts(dataSource, [{ from: "text", to: "integer" }]);
//   automatic("text", "integer") // false: needs USING "c"::integer
import type { DataSource } from "typeorm";
import { knownAutomaticCast } from "./column-type-change";
import type { AutomaticCast } from "./online-ddl";

/** SQLSTATE datatype_mismatch: `column "c" cannot be cast automatically to type integer`. */
const DATATYPE_MISMATCH = "42804";

export async function automaticCasts(dataSource: DataSource, conversions: Array<{ from: string; to: string }>): Promise<AutomaticCast> {
  const known = new Map<string, boolean>();
  const key = (from: string, to: string) => `${from}\u0000${to}`;
  if (conversions.length) {
    const qr = dataSource.createQueryRunner();
    try {
      await qr.connect();
      for (const { from, to } of conversions) {
        if (known.has(key(from, to))) continue;
        await qr.startTransaction();
        try {
          await qr.query(`CREATE TEMP TABLE "migration_cast_probe" ("c" ${from}) ON COMMIT DROP`);
          await qr.query(`ALTER TABLE "migration_cast_probe" ALTER COLUMN "c" TYPE ${to}`);
          known.set(key(from, to), true);
        } catch (error) {
          const code = (error as { driverError?: { code?: string }; code?: string }).driverError?.code ?? (error as { code?: string }).code;
          if (code === DATATYPE_MISMATCH) known.set(key(from, to), false);
        } finally {
          await qr.rollbackTransaction().catch(() => undefined);
        }
      }
    } finally {
      await qr.release();
    }
  }
  return (from, to) => known.get(key(from, to)) ?? knownAutomaticCast(from, to);
}

/**
 * Whether changing a column from `from` to `to` rewrites its table, asked of PostgreSQL itself: a
 * temporary table with one row is changed in a transaction that is rolled back, and its
 * relfilenode compared. `varchar(255) -> varchar(400)` only changes the limit (false); `integer ->
 * bigint` or `text -> varchar(40)` rewrite every row under ACCESS EXCLUSIVE (true). Undefined when
 * the database cannot be asked (or cannot convert without USING).
 */
export async function rewritesTable(dataSource: DataSource, from: string, to: string): Promise<boolean | undefined> {
  const qr = dataSource.createQueryRunner();
  try {
    await qr.connect();
    await qr.startTransaction();
    await qr.query(`CREATE TEMP TABLE "migration_rewrite_probe" ("c" ${from}) ON COMMIT DROP`);
    await qr.query(`INSERT INTO "migration_rewrite_probe" VALUES (NULL)`);
    const before = await qr.query(`SELECT pg_relation_filenode('pg_temp.migration_rewrite_probe') AS f`);
    await qr.query(`ALTER TABLE "migration_rewrite_probe" ALTER COLUMN "c" TYPE ${to}`);
    const after = await qr.query(`SELECT pg_relation_filenode('pg_temp.migration_rewrite_probe') AS f`);
    return String(before[0].f) !== String(after[0].f);
  } catch {
    return undefined;
  } finally {
    await qr.rollbackTransaction().catch(() => undefined);
    await qr.release();
  }
}
