// The guarded part of run and revert, in DESIGN.md's order: verified backup, maintenance mode on,
// the steps one by one, and on failure the steps already done undone newest first; maintenance put
// back (left on if undoing failed too); schema_version recorded. Returns what happened as data.
import { backupDatabases, BackupManifest, BackupRequest, Progress, PrunedRun, pruneBackups } from "../backup/backup";
import type { Config, EvolveSettings } from "../config";
import { connectClient, describeError } from "../postgres/connect";
import type { DbName } from "../databases";
import { MigrationError } from "../errors";
import { ensureBookkeeping, readApplied, readHistory } from "../runner/history";
import { enableMaintenance, MAINTENANCE_MESSAGE, markUndoFailed, putBackMark, readUndoFailed, recordSchemaVersion, repairStaleMaintenance, restoreMaintenance, SavedSetting, setMaintenance, UndoFailedMark, wasOn } from "./maintenance";
import { ReconnectEvent, Reconnects, UnreachableError } from "./reconnects";
import type { LiveRun } from "./hard-stop";
import type { MigrationFile } from "../runner/migration-files";
import { applyMigration, StepResult, Timeouts } from "../runner/migrator";
import type { DbState } from "./plan";
import type { Queryable } from "../postgres/sql";
import { LockTakenError } from "../runner/locks";
import type { LockRetry } from "../runner/lock-retries";
import type { MigrationEvent } from "../runner/migration-runtime";

export interface Step {
  state: DbState;
  file: MigrationFile;
  direction: "up" | "down";
}

export interface DeployOptions {
  runId: string;
  /** The command doing this (migration:run, migration:revert): in the backup manifest and the history. */
  reason: string;
  timeouts: Timeouts;
  backup: boolean;
  /** Keep only this many backup runs (older ones are removed after a successful backup). */
  backupKeep?: number;
  /** After a successful run, leave maintenance mode on (the old manual's window: migrate, deploy the app, check, then off). */
  keepMaintenance?: boolean;
  progress?: Progress;
  /** A migration found a lock taken and is rolled back to try again later. */
  onLockRetry?: (event: LockRetry & { db: DbName; migration: string }) => void;
  /** Aborted (Ctrl-C): stop before the next step and undo what this run did. */
  signal?: AbortSignal;
  /** A server was lost, or is back (MIGRATION_RECONNECT_BUDGET). */
  onReconnect?: ReconnectEvent;
  /** Kept current with what this run changed, for a hard stop to print. */
  live?: LiveRun;
  /** Success means every database is up to date (no --db, no --to): an undo_failed mark may then go. */
  finishes?: boolean;
  /** What helpers inside a migration report: a backfill's progress and pauses. */
  onEvent?: (event: MigrationEvent & { db: DbName }) => void;
  /** Expand/contract settings for the migrations' helpers (the configuration's, unless given). */
  evolve?: EvolveSettings;
}

/** Where a failed run leaves one database. */
export interface DbOutcome {
  db: DbName;
  /** unchanged: nothing of this run; undone: back where it was; not-undone: undoing failed; unreachable: server away. */
  state: "unchanged" | "undone" | "not-undone" | "unreachable";
  /** Migrations this run applied (or reverted) there and did not undo. */
  leftApplied: string[];
  /** The migration running when the server went away: committed or not, nobody could tell. */
  inDoubt?: string;
}

/** A failed run, every field always present (null when it does not apply), as the README's JSON table lists them. */
export interface DeployFailure {
  db: DbName;
  /** The migration that failed; null when the run stopped between migrations. */
  migration: string | null;
  message: string;
  /** Steps of this run undone because of the failure, in the order they were undone. */
  undone: Array<{ db: DbName; name: string; direction: "up" | "down" }>;
  /** Set when undoing failed too: the databases are not back where they were. */
  undoFailed: string | null;
  /** How to put the databases back from the backup taken before the run (null: no backup). */
  restoreCommand: string | null;
  /** Databases whose server stayed away longer than MIGRATION_RECONNECT_BUDGET. */
  unreachable?: DbName[];
  /** One entry per database the run meant to change: where it is left. */
  databases?: DbOutcome[];
}

export interface DeployResult {
  steps: Array<StepResult & { db: DbName }>;
  backup?: { dir: string; manifest: BackupManifest } | { skipped: true };
  /** `kept-on`: --keep-maintenance, for the application rollout; `left-on`: undoing failed. */
  maintenance: "not-available" | "restored" | "left-on" | "kept-on";
  schemaVersionRecorded: boolean;
  pruned: PrunedRun[];
  /** Things that went wrong after the migrations themselves succeeded or were undone. */
  warnings: string[];
  failure?: DeployFailure;
}

/** The parts of a deploy's result that run and revert report as they are. */
export function outcomeOf(deploy: DeployResult): Pick<DeployResult, "backup" | "maintenance" | "failure" | "warnings" | "pruned"> {
  return { backup: deploy.backup, maintenance: deploy.maintenance, failure: deploy.failure, warnings: deploy.warnings, pruned: deploy.pruned };
}

/** Ctrl-C cancels over the server session: the database's own connection is busy with the migration. */
function cancelVia(state: DbState): ((pid: number) => Promise<unknown>) | undefined {
  const session = state.session;
  return session ? (pid) => session.client.query(`SELECT pg_cancel_backend($1)`, [pid]) : undefined;
}

/**
 * Where maintenance_mode and schema_version live: admindb, from this run's states, or opened for
 * the purpose when the run leaves admindb out (`--db authdb`). Undefined, with a warning, when
 * admindb cannot be reached or does not exist yet.
 */
async function openSettings(config: Config, states: DbState[], warnings: string[]): Promise<{ q: Queryable; close: () => Promise<void> } | undefined> {
  const admin = states.find((s) => s.db === "admindb");
  if (admin?.exists) return { q: admin.dataSource, close: async () => undefined };
  if (admin) return undefined; // does not exist: no maintenance_mode to set
  try {
    const client = await connectClient(config.targets.admindb, config.connectTimeoutMs, undefined, states[0]?.session?.runId);
    return { q: client, close: () => client.end().catch(() => undefined) };
  } catch (error) {
    warnings.push(`admindb: maintenance mode not set: ${(error as Error).message}`);
    return undefined;
  }
}

/** What the backup of a database needs to know, from the state the run read under its lock. */
export function backupRequestOf(state: DbState): BackupRequest {
  if (!state.session) throw new Error(`${state.db}: a backup needs the run's server session`);
  return { db: state.db, target: state.target, serverVersion: state.session.serverVersion, serverMajor: state.session.serverMajor, applied: state.applied.map((a) => a.name) };
}

/**
 * For a run with nothing to do: maintenance mode left on by a run that died is put back, so one
 * plain rerun is always enough after a crash. A value marked undo_failed is put back only when
 * `finished` (every database up to date: the job the failed run left is done); otherwise it stays,
 * and the run says so. Returns warnings.
 */
export async function settleMaintenance(config: Config, states: DbState[], finished = false): Promise<string[]> {
  const warnings: string[] = [];
  const settings = await openSettings(config, states, warnings);
  if (!settings) return [];
  try {
    const dead = await repairStaleMaintenance(settings.q);
    if (dead) warnings.push(`admindb: maintenance_mode was left on by run ${dead}, which is no longer running: put back to its earlier value`);
    const mark = await readUndoFailed(settings.q);
    if (mark && finished) {
      const [{ previous }] = [JSON.parse(mark.row.value) as { previous: SavedSetting }];
      await restoreMaintenance(settings.q, previous, mark.run);
      warnings.push(`${foundMark(mark)}; every database is up to date now: maintenance_mode put back to its value before that run`);
    } else if (mark) {
      warnings.push(`${foundMark(mark)}; it stays ON until a run without --db/--to finds every database up to date (or: npm run db:maintenance -- off)`);
    }
  } catch (error) {
    warnings.push(`admindb: could not check maintenance_mode: ${(error as Error).message.split("\n")[0]}`);
  } finally {
    await settings.close();
  }
  return warnings;
}

/** What a run says when it finds an undo_failed mark. */
function foundMark(mark: UndoFailedMark): string {
  return `admindb: found maintenance_mode left ON by run ${mark.run}, which could not undo itself${mark.unreachable.length ? ` (${mark.unreachable.join(", ")} unreachable)` : ""}`;
}

/** Whether the migration's step committed (a try cut off by a lost connection may have, or not). */
async function committed(step: Step, runId: string): Promise<boolean> {
  const applied = (await readApplied(step.state.dataSource)).some((a) => a.name === step.file.name);
  if (applied !== (step.direction === "up")) return false;
  // Done, but by whom: another run that got the locks while this one was away means this run stops.
  const [last] = (await readHistory(step.state.dataSource)).filter((h) => h.name === step.file.name).slice(-1);
  if (last && last.runId !== runId) throw new MigrationError(`${step.file.name} was ${step.direction === "up" ? "applied" : "reverted"} by run ${last.runId} while this run was reconnecting`, step.state.db);
  return true;
}

/** One step, through a lost connection: after reconnecting, a try that committed is not run again. */
async function runStep(step: Step, options: DeployOptions, reconnects: Reconnects, signal?: AbortSignal): Promise<StepResult> {
  const started = Date.now();
  // Expand/contract steps are each safe to run again (src/evolve); other work outside a transaction is not.
  const outsideTransaction = (step.file.migration as { transaction?: boolean }).transaction === false && !(step.file.migration as { evolve?: unknown }).evolve;
  return reconnects.run(step.state.target, async (retry) => {
    if (retry) {
      if (await committed(step, options.runId)) return { name: step.file.name, direction: step.direction, durationMs: Date.now() - started };
      // Half done outside a transaction: running it again could meet its own leftovers.
      if (outsideTransaction) throw new MigrationError(`the connection was lost while ${step.file.name} ran outside a transaction: check for partial changes`, step.state.db);
    }
    return applyMigration(step.state.dataSource, step.file, step.direction, {
      runId: options.runId, command: options.reason, timeouts: options.timeouts, signal, cancelBackend: cancelVia(step.state),
      onRetry: (r) => options.onLockRetry?.({ ...r, db: step.state.db, migration: step.file.name }),
      evolve: options.evolve, onEvent: (e) => options.onEvent?.({ ...e, db: step.state.db }),
    });
  });
}

/**
 * Undoes `done` newest first, in every database that can be reached: a database whose undo fails
 * (or whose server stayed away) keeps the rest of this run's steps, the others are still undone.
 */
async function undo(done: Step[], options: DeployOptions, failure: DeployFailure, reconnects: Reconnects, live?: LiveRun): Promise<void> {
  const stuck = new Set<DbName>();
  const problems: string[] = [];
  for (const step of [...done].reverse()) {
    const db = step.state.db;
    if (stuck.has(db)) continue;
    const direction = step.direction === "up" ? "down" : "up";
    try {
      await runStep({ ...step, direction }, options, reconnects);
      failure.undone.push({ db, name: step.file.name, direction });
      if (live) live.applied = live.applied.filter((a) => !(a.db === db && a.name === step.file.name));
    } catch (error) {
      stuck.add(db);
      // Another run holds the lock there now: undoing under it would change what it read.
      problems.push(error instanceof UnreachableError ? `${db}: unreachable` : error instanceof LockTakenError ? `${db}: not undone: ${error.message}` : new MigrationError(`undoing ${step.file.name} failed: ${describeError(error, step.state.target).message}`, db).line);
    }
  }
  if (problems.length) failure.undoFailed = problems.join("; ");
}

/** One line per database of a run that failed: where it is left. */
function outcomes(states: DbState[], steps: Step[], done: Step[], failure: DeployFailure, reconnects: Reconnects): DbOutcome[] {
  return states.filter((s) => steps.some((st) => st.state === s)).map((s) => {
    const applied = done.filter((d) => d.state === s).map((d) => d.file.name);
    const undone = failure.undone.filter((u) => u.db === s.db).map((u) => u.name);
    const left = applied.filter((n) => !undone.includes(n));
    const unreachable = reconnects.isUnreachable(s.target);
    const inDoubt = unreachable && failure.db === s.db ? failure.migration : undefined;
    const state: DbOutcome["state"] = unreachable ? "unreachable" : left.length ? "not-undone" : undone.length ? "undone" : "unchanged";
    return { db: s.db, state, leftApplied: left, ...(inDoubt ? { inDoubt } : {}) };
  });
}

export async function executeSteps(config: Config, states: DbState[], steps: Step[], given: DeployOptions): Promise<DeployResult> {
  const options: DeployOptions = { ...given, evolve: given.evolve ?? config.evolve };
  const touched = states.filter((s) => steps.some((st) => st.state === s));
  const result: DeployResult = { steps: [], maintenance: "not-available", schemaVersionRecorded: false, pruned: [], warnings: [] };
  const sessions = [...new Set(states.map((s) => s.session).filter((s): s is NonNullable<typeof s> => !!s))];
  const reconnects = new Reconnects(config, sessions, options.runId, options.onReconnect, options.signal);
  const live = options.live;
  const admin = states.find((s) => s.db === "admindb")?.target ?? config.targets.admindb;

  if (options.backup) {
    // A database this run created is empty: there is nothing to back up.
    const requests = touched.filter((s) => !s.created).map(backupRequestOf);
    result.backup = await backupDatabases(requests, {
      backupDir: config.backupDir, runId: options.runId, reason: options.reason, compression: config.backupCompression, connectTimeoutMs: config.connectTimeoutMs, progress: options.progress,
      signal: options.signal, recover: recoverFor(states, reconnects),
    });
    if (requests.length) result.pruned = pruneBackups(config.backupDir, options.backupKeep ?? config.backupKeep);
  } else {
    result.backup = { skipped: true };
  }
  const restoreCommand = result.backup && "manifest" in result.backup && result.backup.manifest.databases.length
    ? `npm run db:restore -- ${options.runId}`
    : null;

  const settings = await openSettings(config, states, result.warnings);
  const onAdmin = <T>(work: () => Promise<T>) => reconnects.run(admin, work);
  try {
    const enabled = settings ? await onAdmin(() => enableMaintenance(settings.q, options.runId)) : undefined;
    if (enabled && live) live.maintenanceOn = true;
    if (enabled?.marked) result.warnings.push(`${foundMark(enabled.marked)}; this run goes forward: if it finishes every database, maintenance_mode goes back to its value before that run, else it stays ON, marked`);
    const done: Step[] = [];
    try {
      await Promise.all(touched.map((s) => reconnects.run(s.target, () => ensureBookkeeping(s.dataSource))));
      for (const step of steps) {
        if (options.signal?.aborted) {
          result.failure = { db: step.state.db, migration: null, message: "interrupted before this step", undone: [], undoFailed: null, restoreCommand };
          break;
        }
        const event = { db: step.state.db, step: step.direction === "up" ? "applying" : "reverting", detail: step.file.name };
        try {
          // A lock session that died meanwhile is reopened with its locks, or the run stops.
          await reconnects.checkSessions();
          options.progress?.({ ...event, phase: "start" });
          const r = await runStep(step, options, reconnects, options.signal);
          options.progress?.({ ...event, phase: "end" });
          result.steps.push({ ...r, db: step.state.db });
          done.push(step);
          live?.applied.push({ db: step.state.db, name: step.file.name, direction: step.direction });
        } catch (error) {
          options.progress?.({ ...event, phase: "end" });
          let message = options.signal?.aborted ? "interrupted (rolled back)" : describeError(error, step.state.target).message;
          // Outside a transaction nothing rolled back: say so, or the next run trips over the leftovers.
          // Expand/contract steps are each safe to run again (src/evolve): no partial state to check by hand.
          if ((step.file.migration as { evolve?: unknown }).evolve) message += " (its steps are safe to run again)";
          else if ((step.file.migration as { transaction?: boolean }).transaction === false) message += " (it ran outside a transaction: check for partial changes before running again; an INVALID index it built was dropped)";
          else if (/cannot run inside a transaction block/.test(message)) message += " (set `transaction = false` in the migration: CONCURRENTLY runs outside a transaction)";
          result.failure = { db: step.state.db, migration: step.file.name, message, undone: [], undoFailed: null, restoreCommand };
          // An expand cut half way (a backfill that met a value it cannot convert) leaves its trigger and
          // new column: its down (IF EXISTS throughout) takes away what it did, with the rest of the run.
          const migration = step.file.migration as { evolve?: unknown; phase?: string };
          if (migration.evolve && migration.phase === "expand") done.push(step);
          break;
        }
      }
      if (result.failure) {
        await undo(done, options, result.failure, reconnects, live);
        const unreachable = reconnects.unreachableDbs(touched.map((s) => s.target));
        if (unreachable.length) result.failure.unreachable = unreachable;
        result.failure.databases = outcomes(states, steps, done, result.failure, reconnects);
        // A server lost for good while undoing: what this run changed there cannot be known.
        if (unreachable.length && !result.failure.undoFailed) result.failure.undoFailed = unreachable.map((db) => `${db}: unreachable`).join("; ");
      }
    } finally {
      if (settings && enabled) {
        const failure = result.failure;
        if (failure?.undoFailed) {
          result.maintenance = "left-on";
          const dbs = failure.unreachable ?? [];
          await onAdmin(() => markUndoFailed(settings.q, options.runId, dbs)).catch((error: Error) => {
            result.warnings.push(`admindb: maintenance_mode is ON but could not be marked undo_failed: ${error.message.split("\n")[0]}`);
          });
        } else if (!failure && options.keepMaintenance) {
          // A window the operator opened (db:maintenance on --message) stays theirs, message included;
          // else ours, in the plain shape a person would set, so no later run takes it for a dead run's.
          if (wasOn(enabled.previous)) await onAdmin(() => restoreMaintenance(settings.q, enabled.previous, options.runId));
          else await onAdmin(() => setMaintenance(settings.q, { enabled: true, message: MAINTENANCE_MESSAGE }));
          result.maintenance = "kept-on";
        } else if (enabled.marked && (failure || !options.finishes)) {
          // The job the marked run left is not done: the mark stays as it was found.
          await onAdmin(() => putBackMark(settings.q, enabled.marked!, options.runId)).catch(() => undefined);
          result.maintenance = "left-on";
        } else {
          try {
            const put = await onAdmin(() => restoreMaintenance(settings.q, enabled.previous, options.runId));
            if (!put) result.warnings.push("admindb: maintenance_mode was changed by someone else during the run: left as they set it");
            result.maintenance = "restored";
            if (live) live.maintenanceOn = false;
            if (enabled.marked && put) result.warnings.push(`admindb: every database is up to date: maintenance_mode put back to its value before run ${enabled.marked.run}`);
          } catch (error) {
            result.maintenance = "left-on";
            result.warnings.push(`admindb: could not put maintenance_mode back, it is still on: ${(error as Error).message.split("\n")[0]}`);
          }
        }
      }
    }
    if (!result.failure && settings) {
      try {
        const latest: Record<string, string | null> = {};
        for (const s of states.filter((st) => st.exists)) {
          const applied = await reconnects.run(s.target, () => readApplied(s.dataSource));
          latest[s.db] = applied[applied.length - 1]?.name ?? null;
        }
        result.schemaVersionRecorded = await onAdmin(() => recordSchemaVersion(settings.q, options.runId, latest));
      } catch (error) {
        result.warnings.push(`admindb: schema_version not recorded: ${(error as Error).message.split("\n")[0]}`);
      }
    }
  } finally {
    await settings?.close();
  }
  return result;
}

/**
 * How a backup gets through a lost connection: the server waited for, the locks taken again, and
 * the database found as the run read it (else another run got in, and this one stops).
 */
export function recoverFor(states: DbState[], reconnects: Reconnects): (db: DbName, cause: string) => Promise<void> {
  return async (db, cause) => {
    const state = states.find((s) => s.db === db)!;
    await reconnects.recover(state.target, new Error(cause));
    const now = (await reconnects.run(state.target, () => readApplied(state.dataSource))).map((a) => a.name);
    if (now.join() !== state.applied.map((a) => a.name).join()) throw new MigrationError("another run changed this database while this run was reconnecting", db);
  };
}
