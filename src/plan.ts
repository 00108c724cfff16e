// Reading where a database stands: connect, read what is applied, match it with the files, list
// what is pending, check the extensions the migrations need. Returns facts; changes nothing
// (but creates a missing database when asked to).
import type { DataSource } from "typeorm";
import type { Config, DbTarget } from "./config";
import { createDatabaseIfMissing, describeError, openDataSource } from "./connect";
import { DbName, REQUIRED_EXTENSIONS } from "./databases";
import { MigrationError } from "./errors";
import { AppliedMigration, readApplied } from "./history";
import { loadMigrationFiles, MigrationFile } from "./migration-files";

export interface DbState {
  db: DbName;
  target: DbTarget;
  dataSource: DataSource;
  files: MigrationFile[];
  applied: AppliedMigration[];
  pending: MigrationFile[];
  /** Applied migrations whose file is gone. */
  missingFiles: string[];
  /** The database did not exist and was created for this run. */
  created: boolean;
  /** Number of user tables (bookkeeping excluded). */
  tableCount: number;
}

export interface PlanOptions {
  createMissing?: boolean;
}

export async function readState(config: Config, db: DbName, options: PlanOptions = {}): Promise<DbState> {
  const target = config.targets[db];
  const files = loadMigrationFiles(db);
  const created = options.createMissing ? await createDatabaseIfMissing(target, config.connectTimeoutMs) : false;
  const dataSource = await openDataSource(target, config.connectTimeoutMs);
  try {
    const applied = await readApplied(dataSource);
    const appliedNames = new Set(applied.map((a) => a.name));
    const fileNames = new Set(files.map((f) => f.name));
    const [{ count }] = await dataSource.query(
      `SELECT count(*)::int AS count FROM pg_tables WHERE schemaname = 'public' AND tablename NOT LIKE 'migrations%'`,
    );
    return {
      db, target, dataSource, files, applied, created, tableCount: count,
      pending: files.filter((f) => !appliedNames.has(f.name)),
      missingFiles: applied.filter((a) => !fileNames.has(a.name)).map((a) => a.name),
    };
  } catch (error) {
    await dataSource.destroy().catch(() => undefined);
    throw describeError(error, target);
  }
}

/** Reads every database's state at once; on any failure closes what it opened and throws the first. */
export async function readStates(config: Config, dbs: DbName[], options: PlanOptions = {}): Promise<DbState[]> {
  const settled = await Promise.allSettled(dbs.map((db) => readState(config, db, options)));
  const failed = settled.find((s): s is PromiseRejectedResult => s.status === "rejected");
  if (failed) {
    await closeStates(settled.flatMap((s) => (s.status === "fulfilled" ? [s.value] : [])));
    throw failed.reason;
  }
  return settled.map((s) => (s as PromiseFulfilledResult<DbState>).value);
}

export async function closeStates(states: DbState[]): Promise<void> {
  await Promise.all(states.map((s) => s.dataSource.destroy().catch(() => undefined)));
}

/** Throws when an extension the migrations need is neither installed nor installable on the server. */
export async function checkExtensions(state: DbState): Promise<void> {
  const needed = REQUIRED_EXTENSIONS[state.db];
  const rows: Array<{ name: string }> = await state.dataSource.query(
    `SELECT name FROM pg_available_extensions WHERE name = ANY($1)`, [needed],
  );
  const available = new Set(rows.map((r) => r.name));
  const missing = needed.filter((n) => !available.has(n));
  if (missing.length) {
    throw new MigrationError(`extension ${missing.map((m) => `"${m}"`).join(", ")} is not available on the server (install ${missing.includes("vector") ? "pgvector" : "postgresql-contrib"})`, state.db);
  }
}

/** Refuses a database built by the legacy init.sql (tables, no history): it must be baselined first. */
export function checkAdoptable(state: DbState): void {
  if (state.applied.length === 0 && state.tableCount > 0) {
    throw new MigrationError(`has ${state.tableCount} tables but no migration history: adopt it with \`npm run migration:baseline -- --db ${state.db}\``, state.db);
  }
}

/** Throws when an applied migration's file is gone: history and files must agree. */
export function checkFilesPresent(state: DbState): void {
  if (state.missingFiles.length) {
    throw new MigrationError(`applied migration ${state.missingFiles[0]} has no file in src/migrations/${state.db}/`, state.db);
  }
}
