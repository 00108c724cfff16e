// Reading where a database stands: connect, read what is applied, match it with the files, list
// what is pending, check the extensions the migrations need. Returns facts and changes nothing: a
// missing database is planned as empty and only created by `createMissingDatabases`, after every
// check has passed.
import * as path from "path";
import { DataSource } from "typeorm";
import type { Config, DbTarget } from "../config";
import { connectClient, connectServer, createDatabase, describeError, openDataSource } from "../postgres/connect";
import { settleAll } from "../postgres/sql";
import { dataSourceOptions } from "../postgres/data-source";
import type { DbName } from "../databases";
import { MigrationError } from "../errors";
import { AppliedMigration, HistoryEntry, readApplied, readHistory, recordedChecksums } from "../runner/history";
import { extensionsCreatedBy, loadMigrationFiles, MigrationFile } from "../runner/migration-files";

export interface DbState {
  db: DbName;
  target: DbTarget;
  /** Initialized when the database exists; for a missing one, only after it was created. */
  dataSource: DataSource;
  files: MigrationFile[];
  applied: AppliedMigration[];
  /** migrations_history, oldest first, as read when the state was read. */
  history: HistoryEntry[];
  pending: MigrationFile[];
  /** Applied migrations whose file is gone. */
  missingFiles: string[];
  /** Applied migrations whose file changed since (checksum differs from the one recorded). */
  changedFiles: MigrationFile[];
  /** Applied migrations with no checksum on record (applied by another tool). */
  unverified: string[];
  /** False when the database does not exist (yet). */
  exists: boolean;
  /** The database did not exist and was created by this run. */
  created: boolean;
  /** Number of user tables (bookkeeping excluded). */
  tableCount: number;
  connectTimeoutMs: number;
  migrationsDir: string;
}

export async function readState(config: Config, db: DbName): Promise<DbState> {
  const target = config.targets[db];
  const files = loadMigrationFiles(config.migrationsDir, db);
  const base = { db, target, files, created: false, connectTimeoutMs: config.connectTimeoutMs, migrationsDir: config.migrationsDir };
  let dataSource: DataSource;
  try {
    dataSource = await openDataSource(target, config.connectTimeoutMs);
  } catch (error) {
    // Only the database is missing when the server takes our credentials on its `postgres` database.
    if (!/^database ".*" does not exist/.test((error as Error).message)) throw error;
    await (await connectServer(target, config.connectTimeoutMs)).end().catch(() => undefined);
    dataSource = new DataSource(dataSourceOptions(db, target.url, config.connectTimeoutMs));
    return { ...base, dataSource, exists: false, applied: [], history: [], pending: files, missingFiles: [], changedFiles: [], unverified: [], tableCount: 0 };
  }
  try {
    const [applied, history] = await Promise.all([readApplied(dataSource), readHistory(dataSource)]);
    const appliedNames = new Set(applied.map((a) => a.name));
    const fileNames = new Set(files.map((f) => f.name));
    const recorded = recordedChecksums(history);
    const appliedFiles = files.filter((f) => appliedNames.has(f.name));
    const [{ count }] = await dataSource.query(
      `SELECT count(*)::int AS count FROM pg_tables WHERE schemaname = 'public' AND tablename NOT LIKE 'migrations%'`,
    );
    return {
      ...base, dataSource, applied, history, exists: true, tableCount: count,
      pending: files.filter((f) => !appliedNames.has(f.name)),
      missingFiles: applied.filter((a) => !fileNames.has(a.name)).map((a) => a.name),
      changedFiles: appliedFiles.filter((f) => recorded.has(f.name) && recorded.get(f.name) !== f.checksum),
      unverified: appliedFiles.filter((f) => !recorded.has(f.name)).map((f) => f.name),
    };
  } catch (error) {
    await dataSource.destroy().catch(() => undefined);
    throw describeError(error, target);
  }
}

/** Reads every database's state at once; on any failure closes what it opened and throws the first. */
export async function readStates(config: Config, dbs: DbName[]): Promise<DbState[]> {
  return settleAll(dbs.map((db) => readState(config, db)), closeStates);
}

/** Creates the databases that do not exist yet and connects to them. */
export async function createMissingDatabases(states: DbState[]): Promise<void> {
  // All attempts finish (so `created` is true of every database made) before the first error is thrown.
  await settleAll(states.filter((s) => !s.exists).map(async (s) => {
    s.created = await createDatabase(s.target, s.connectTimeoutMs);
    s.dataSource = await openDataSource(s.target, s.connectTimeoutMs);
    s.exists = true;
  }));
}

/** Throws when a database is missing: for commands that only read. */
export function checkExists(state: DbState): void {
  if (!state.exists) throw new MigrationError(`database "${state.target.database}" does not exist (migration:run creates it)`, state.db);
}

export async function closeStates(states: DbState[]): Promise<void> {
  await Promise.all(states.map((s) => (s.dataSource.isInitialized ? s.dataSource.destroy() : undefined)?.catch(() => undefined)));
}

/** Throws when an extension the pending migrations need is neither installed nor installable. */
export async function checkExtensions(state: DbState, files: MigrationFile[]): Promise<void> {
  const needed = extensionsCreatedBy(files);
  if (!needed.length) return;
  // Asked on the server's `postgres` database when ours does not exist yet.
  const client = state.exists ? await connectClient(state.target, state.connectTimeoutMs) : await connectServer(state.target, state.connectTimeoutMs);
  let available: Set<string>;
  try {
    const { rows } = await client.query<{ name: string }>(`SELECT name FROM pg_available_extensions WHERE name = ANY($1)`, [needed]);
    available = new Set(rows.map((r) => r.name));
  } finally {
    await client.end().catch(() => undefined);
  }
  const missing = needed.filter((n) => !available.has(n));
  if (missing.length) {
    const hint = missing.includes("vector") ? " (install pgvector on the server)" : "";
    throw new MigrationError(`extension ${missing.map((m) => `"${m}"`).join(", ")} needed by the pending migrations is not available on the server${hint}`, state.db);
  }
}

/** Refuses a database built by the legacy init.sql (tables, no history): it must be baselined first. */
export function checkAdoptable(state: DbState): void {
  if (state.applied.length === 0 && state.tableCount > 0) {
    const tables = `${state.tableCount} table${state.tableCount === 1 ? "" : "s"}`;
    throw new MigrationError(`has ${tables} but no migration history: adopt it with \`npm run migration:baseline -- --db ${state.db}\``, state.db);
  }
}

/**
 * Throws before anything changes when history and files disagree: an applied migration's file is
 * gone, or was edited after it was applied.
 */
export function checkIntegrity(state: DbState): void {
  if (state.missingFiles.length) {
    throw new MigrationError(`applied migration ${state.missingFiles[0]} has no file in ${path.relative(process.cwd(), path.join(state.migrationsDir, state.db)) || "."}/ (restore it from version control)`, state.db);
  }
  const [changed] = state.changedFiles;
  if (changed) {
    throw new MigrationError(`applied migration ${changed.file} was edited after it was applied (checksum differs); undo the edit, or accept it with \`npm run migration:repair -- --db ${state.db}\``, state.db);
  }
}
