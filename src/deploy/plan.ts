// Reading where a database stands: what is applied, what history says, how many tables it has, all
// from one snapshot; matched with the files to list what is pending and what was edited. The checks
// here run before anything changes and throw one line naming the database. Nothing here writes:
// a missing database is planned as empty and only created by `createMissingDatabases`.
import * as path from "path";
import { DataSource } from "typeorm";
import type { Config, DbTarget } from "../config";
import { connectClient, connectServer, createDatabase, describeError, openDataSource } from "../postgres/connect";
import { settleAll } from "../postgres/sql";
import { dataSourceOptions } from "../postgres/data-source";
import { DATABASES, DbName } from "../databases";
import { MigrationError } from "../errors";
import { AppliedMigration, HistoryEntry, readApplied, readHistory, recordedChecksums } from "../runner/history";
import { existingDatabases, LockWait, ServerSession, withLocks } from "../runner/locks";
import { checkLoadable, extensionsCreatedBy, loadMigrationFiles, MigrationFile } from "../runner/migration-files";
import { lintFailure, lintSql, LintResult, migrationSql, offlineDataSource } from "../safety/lint";
import { SquashAdoption, SquashGap, squashView } from "../runner/squashed";

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
  /** Squashes this database applied under their replaced migrations: its history is rewritten to them by the next run. */
  squashAdoptions: SquashAdoption[];
  /** Squashes of which this database applied some replaced migrations but not all: a run is refused. */
  squashGaps: SquashGap[];
  /** Number of user tables (bookkeeping excluded). */
  tableCount: number;
  connectTimeoutMs: number;
  migrationsDir: string;
  /** The locked session on this database's server, when the state was read under the deploy lock. */
  session?: ServerSession;
}

interface Snapshot {
  applied: AppliedMigration[];
  history: HistoryEntry[];
  tableCount: number;
}

/** Applied list, history and table count from one snapshot (REPEATABLE READ, read only). */
async function readSnapshot(dataSource: DataSource): Promise<Snapshot> {
  const qr = dataSource.createQueryRunner();
  try {
    await qr.connect();
    await qr.query("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
    const applied = await readApplied(qr);
    const history = await readHistory(qr);
    const [{ count }] = await qr.query(`SELECT count(*)::int AS count FROM pg_tables WHERE schemaname = 'public' AND tablename NOT LIKE 'migrations%'`);
    await qr.query("COMMIT");
    return { applied, history, tableCount: count };
  } catch (error) {
    await qr.query("ROLLBACK").catch(() => undefined);
    throw error;
  } finally {
    await qr.release();
  }
}

type Base = Pick<DbState, "db" | "target" | "files" | "connectTimeoutMs" | "migrationsDir" | "session">;

function baseOf(config: Config, db: DbName, files = loadMigrationFiles(config.migrationsDir, db)): Base {
  return { db, target: config.targets[db], files, connectTimeoutMs: config.connectTimeoutMs, migrationsDir: config.migrationsDir };
}

/** The state of a database that does not exist: everything pending. */
function missingState(base: Base): DbState {
  const dataSource = new DataSource(dataSourceOptions(base.db, base.target.url, base.connectTimeoutMs));
  return { ...base, dataSource, exists: false, created: false, applied: [], history: [], pending: base.files, missingFiles: [], changedFiles: [], unverified: [], squashAdoptions: [], squashGaps: [], tableCount: 0 };
}

/** Matches what the database says with the files. */
function stateOf(base: Base, dataSource: DataSource, read: Snapshot): DbState {
  // A squash whose replaced migrations are all applied counts as applied (runner/squashed.ts).
  const squash = squashView(base.files, read.applied);
  const snap = { ...read, applied: squash.applied };
  const appliedNames = new Set(snap.applied.map((a) => a.name));
  const fileNames = new Set(base.files.map((f) => f.name));
  const recorded = recordedChecksums(snap.history);
  const appliedFiles = base.files.filter((f) => appliedNames.has(f.name));
  return {
    ...base, dataSource, ...snap, exists: true, created: false, squashAdoptions: squash.adoptions, squashGaps: squash.gaps,
    pending: base.files.filter((f) => !appliedNames.has(f.name)),
    missingFiles: snap.applied.filter((a) => !fileNames.has(a.name)).map((a) => a.name),
    changedFiles: appliedFiles.filter((f) => recorded.has(f.name) && recorded.get(f.name) !== f.checksum),
    unverified: appliedFiles.filter((f) => !recorded.has(f.name)).map((f) => f.name),
  };
}

async function openAndRead(base: Base): Promise<DbState> {
  const dataSource = await openDataSource(base.target, base.connectTimeoutMs, base.session?.runId);
  try {
    return stateOf(base, dataSource, await readSnapshot(dataSource));
  } catch (error) {
    await dataSource.destroy().catch(() => undefined);
    throw describeError(error, base.target);
  }
}

/** Where one database stands, read without the deploy lock (for commands that only read). */
export async function readState(config: Config, db: DbName): Promise<DbState> {
  const base = baseOf(config, db);
  try {
    return await openAndRead(base);
  } catch (error) {
    // Only the database is missing when the server takes our credentials on its `postgres` database.
    if (!/^database ".*" does not exist/.test((error as Error).message)) throw error;
    await (await connectServer(base.target, config.connectTimeoutMs)).end().catch(() => undefined);
    return missingState(base);
  }
}

/** Reads every database's state at once; on any failure closes what it opened and throws the first. */
export async function readStates(config: Config, dbs: DbName[]): Promise<DbState[]> {
  return settleAll(dbs.map((db) => readState(config, db)), closeStates);
}

/**
 * The states a run decides from, read under the deploy lock of `sessions` (which know which
 * databases exist): one connection per existing database, each read in one snapshot.
 */
export async function readLockedStates(config: Config, sessions: ServerSession[], dbs: DbName[]): Promise<DbState[]> {
  const existing = await Promise.all(sessions.map(existingDatabases));
  const states = await settleAll(sessions.flatMap((session, i) => session.targets.filter((t) => dbs.includes(t.db)).map(async (target) => {
    const base = { ...baseOf(config, target.db), session };
    if (existing[i].has(target.database)) return openAndRead(base);
    // Not there yet: its own credentials are tried on the server before the run creates it.
    await (await connectServer(target, config.connectTimeoutMs, session.runId)).end().catch(() => undefined);
    return missingState(base);
  })), closeStates);
  return states.sort((a, b) => DATABASES.indexOf(a.db) - DATABASES.indexOf(b.db));
}

/** Creates the databases that do not exist yet (under the deploy lock: no other run races us) and connects to them. */
export async function createMissingDatabases(states: DbState[]): Promise<void> {
  // All attempts finish (so `created` is true of every database made) before the first error is thrown.
  await settleAll(states.filter((s) => !s.exists).map(async (s) => {
    s.created = await createDatabase(s.target, s.connectTimeoutMs, s.session?.runId);
    s.dataSource = await openDataSource(s.target, s.connectTimeoutMs, s.session?.runId);
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
  // Asked on the run's server session; without one, on the server's `postgres` database when ours does not exist yet.
  const own = !state.session;
  const client = state.session?.client ?? (state.exists ? await connectClient(state.target, state.connectTimeoutMs) : await connectServer(state.target, state.connectTimeoutMs));
  let available: Set<string>;
  try {
    const { rows } = await client.query<{ name: string }>(`SELECT name FROM pg_available_extensions WHERE name = ANY($1)`, [needed]);
    available = new Set(rows.map((r) => r.name));
  } finally {
    if (own) await client.end().catch(() => undefined);
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
  const [gap] = state.squashGaps;
  if (gap) {
    const missing = gap.missing.length > 5 ? `${gap.missing.slice(0, 5).join(", ")} and ${gap.missing.length - 5} more` : gap.missing.join(", ");
    throw new MigrationError(`has applied ${gap.applied.length} of the ${gap.squash.replaces!.length} migrations squashed into ${gap.squash.name}, not ${missing}: deploy a release that still has them first, then this one`, state.db);
  }
  if (state.missingFiles.length) {
    throw new MigrationError(`applied migration ${state.missingFiles[0]} has no file in ${path.relative(process.cwd(), path.join(state.migrationsDir, state.db)) || "."}/ (restore it from version control)`, state.db);
  }
  const [changed] = state.changedFiles;
  if (changed) {
    throw new MigrationError(`applied migration ${changed.file} was edited after it was applied (checksum differs); undo the edit, or accept it with \`npm run migration:repair -- --db ${state.db}\``, state.db);
  }
}

/**
 * Every check a run makes before its first change, for the migrations it will apply in `state`:
 * history matches the files, the database can take migrations, each file compiles and exports its
 * migration, the extensions they create are available, and their SQL lints clean (squawk) or
 * accepts its findings. With `unsafe`, lint findings are returned instead of refused.
 */
export async function checkPlan(state: DbState, todo: MigrationFile[], options: { unsafe?: boolean } = {}): Promise<PlanCheck | undefined> {
  checkIntegrity(state);
  if (!todo.length) return undefined;
  checkAdoptable(state);
  checkLoadable(state.db, todo); // compiles them all first
  await checkExtensions(state, todo);
  // Linted from the SQL the migrations emit, recorded once without a connection (the data-loss
  // count reads the same record).
  const recorded = await migrationSql(todo, offlineDataSource(state.db));
  const lint = await lintSql(state.db, recorded);
  const failure = lintFailure(lint);
  if (failure && !options.unsafe) throw new MigrationError(`${failure}, or deploy with --unsafe`, state.db);
  return { ...lint, recorded: new Map(recorded.map((e) => [e.file.name, e.sql])) };
}

/** What the plan checked: the lint, and the SQL each migration's up runs (by migration name). */
export type PlanCheck = LintResult & { recorded: Map<string, string[]> };

/**
 * Runs `body` under the deploy locks of `dbs`, with their states read after the locks were taken:
 * what a run decides from is what no other run can change until it is done. Closes everything.
 */
export async function withLockedStates<T>(
  config: Config, dbs: DbName[], options: { runId: string; lockTimeoutMs: number; onWait?: LockWait },
  body: (states: DbState[]) => Promise<T>,
): Promise<T> {
  // admindb is locked too: every run may write its maintenance_mode and schema_version.
  const locked = DATABASES.filter((db) => dbs.includes(db) || db === "admindb");
  return withLocks(config, locked, { timeoutMs: options.lockTimeoutMs, runId: options.runId, onWait: options.onWait }, async (sessions) => {
    const states = await readLockedStates(config, sessions, dbs);
    try {
      return await body(states);
    } finally {
      await closeStates(states);
    }
  });
}
