// migration:check: every way a database can have drifted, as findings (CI-friendly, exit 1 on any):
// entity drift (the entities differ from the schema the database will have once its pending
// migrations run), history drift (edited or missing applied migrations), schema drift (the live
// catalog differs from what the applied migrations produce). Pending migrations are listed, not
// drift: right before a deploy they are expected (`failOnPending` makes them a failure too).
import { diffCatalogs, readCatalog } from "../schema/catalog";
import type { Config } from "../config";
import type { DbName } from "../databases";
import { closeStates, DbState, readStates } from "../deploy/plan";
import type { DataSource } from "typeorm";
import { loadSqlParser } from "../postgres/sql-parse";
import type { MigrationFile } from "../runner/migration-files";
import { schemaDiff } from "../schema/diff";
import { managedByMigrations, readIndexes, withoutForeignIndexes } from "../schema/indexes";
import { withShadow } from "../schema/shadow";

export interface DbCheck {
  db: DbName;
  /** Migrations migration:run would apply (all of them when the database does not exist yet). Not drift. */
  pending: string[];
  /**
   * SQL TypeORM would generate to bring the database to the entities, once its pending migrations
   * ran (computed in the shadow database when some are pending, on the live database otherwise).
   */
  entityDrift: string[];
  /** Checksum mismatches, applied migrations with no file, tables with no history. */
  historyDrift: string[];
  /** Differences of the live schema from the one the applied migrations build. */
  schemaDrift: string[];
  /**
   * Indexes the entities cannot declare that a migration created (`idx_emb_hnsw on
   * langchain_pg_embedding (using hnsw, operator class), created by AddHnsw1796...`): owned by the
   * migrations, not drift.
   */
  managedByMigrations: string[];
}

export interface CheckReport {
  command: "check";
  /** No drift in any database (and, with `failOnPending`, nothing pending either). */
  ok: boolean;
  databases: DbCheck[];
}

export interface CheckOptions {
  /** An empty scratch database to replay migrations in, when the role may not create one. */
  shadowUrl?: string;
  /** Pending migrations make the check fail (a CI job asserting an environment is up to date). */
  failOnPending?: boolean;
}

/** True when a database has drifted (pending migrations are not drift). */
export function hasDrift(d: DbCheck): boolean {
  return d.entityDrift.length + d.historyDrift.length + d.schemaDrift.length > 0;
}

/**
 * Checks each database; one shadow database at most per database.
 *
 *   const report = await checkDatabases(config, ["authdb", "apidb"], { failOnPending: true });
 *   if (!report.ok) process.exitCode = 1;
 */
export async function checkDatabases(config: Config, dbs: DbName[], options: CheckOptions = {}): Promise<CheckReport> {
  const states = await readStates(config, dbs);
  try {
    const databases: DbCheck[] = [];
    for (const s of states) databases.push(await checkDatabase(config, s, options));
    const ok = databases.every((d) => !hasDrift(d) && !(options.failOnPending && d.pending.length));
    return { command: "check", ok, databases };
  } finally {
    await closeStates(states);
  }
}

async function checkDatabase(config: Config, s: DbState, options: CheckOptions): Promise<DbCheck> {
  const check: DbCheck = { db: s.db, pending: s.pending.map((f) => f.name), entityDrift: [], historyDrift: [], schemaDrift: [], managedByMigrations: [] };
  for (const f of s.changedFiles) check.historyDrift.push(`${f.file} was edited after it was applied (checksum differs)`);
  for (const name of s.missingFiles) check.historyDrift.push(`applied migration ${name} has no file`);
  const unadopted = s.exists && s.applied.length === 0 && s.tableCount > 0;
  if (unadopted) check.historyDrift.push(`has ${s.tableCount} tables but no migration history (adopt it with migration:baseline)`);

  // With an applied file missing, no replay builds what the database has: schema drift and the
  // schema after the pending migrations are unknown (history drift already fails the check).
  const replayable = !s.missingFiles.length;
  const compareSchema = s.exists && !unadopted && replayable;
  const afterPending = s.pending.length > 0 && replayable;
  if (compareSchema || afterPending) {
    const applied = new Set(s.applied.map((a) => a.name));
    await withShadow(s.target, { shadowUrl: options.shadowUrl, connectTimeoutMs: config.connectTimeoutMs }, async (shadow) => {
      await shadow.apply(s.files.filter((f) => applied.has(f.name)));
      if (compareSchema) check.schemaDrift = diffCatalogs(await readCatalog(s.dataSource), await shadow.catalog(), { columnOrder: false });
      if (afterPending) {
        await shadow.apply(s.pending);
        Object.assign(check, await entityDrift(shadow.dataSource, [...s.files.filter((f) => applied.has(f.name)), ...s.pending]));
      }
    });
  }
  // Nothing pending: the live database is what the entities must match (hand changes show here too).
  if (s.exists && !s.pending.length) {
    const applied = new Set(s.applied.map((a) => a.name));
    Object.assign(check, await entityDrift(s.dataSource, s.files.filter((f) => applied.has(f.name))));
  }
  return check;
}

/** TypeORM's diff of the entities against `dataSource`, less the indexes `migrations` own (and duplicates generate never writes). */
async function entityDrift(dataSource: DataSource, migrations: MigrationFile[]): Promise<Pick<DbCheck, "entityDrift" | "managedByMigrations">> {
  await loadSqlParser();
  const indexes = await readIndexes(dataSource);
  const managed = managedByMigrations(indexes, migrations);
  const { diff } = withoutForeignIndexes(await schemaDiff(dataSource), managed, indexes);
  return {
    entityDrift: diff.up.map((q) => q.query),
    managedByMigrations: managed.map((m) => `${m.name} on ${m.table} (${m.why}), created by ${m.migration}`),
  };
}
