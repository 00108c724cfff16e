// The guarded part of run and revert, in DESIGN.md's order: verified backup, maintenance mode on,
// the steps one by one, and on failure the steps already done undone newest first; maintenance put
// back (left on if undoing failed too); schema_version recorded. Returns what happened as data.
import { backupDatabases, BackupManifest, BackupRequest, Progress, pruneBackups } from "../backup/backup";
import type { Config } from "../config";
import { connectClient, describeError } from "../postgres/connect";
import type { DbName } from "../databases";
import { MigrationError } from "../errors";
import { ensureBookkeeping, readApplied } from "../runner/history";
import { enableMaintenance, MAINTENANCE_MESSAGE, markUndoFailed, recordSchemaVersion, repairStaleMaintenance, restoreMaintenance, setMaintenance } from "./maintenance";
import type { MigrationFile } from "../runner/migration-files";
import { applyMigration, StepResult, Timeouts } from "../runner/migrator";
import type { DbState } from "./plan";
import type { Queryable } from "../postgres/sql";
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
  /** What helpers inside a migration report: a backfill's progress and pauses. */
  onEvent?: (event: MigrationEvent & { db: DbName }) => void;
}

export interface DeployFailure {
  db: DbName;
  migration?: string;
  message: string;
  /** Steps of this run undone because of the failure, in the order they were undone. */
  undone: Array<{ db: DbName; name: string; direction: "up" | "down" }>;
  /** Set when undoing failed too: the databases are not back where they were. */
  undoFailed?: string;
  /** How to put the databases back from the backup taken before the run. */
  restoreCommand?: string;
}

export interface DeployResult {
  steps: Array<StepResult & { db: DbName }>;
  backup?: { dir: string; manifest: BackupManifest } | { skipped: true };
  /** `kept-on`: --keep-maintenance, for the application rollout; `left-on`: undoing failed. */
  maintenance: "not-available" | "restored" | "left-on" | "kept-on";
  schemaVersionRecorded: boolean;
  pruned: string[];
  /** Things that went wrong after the migrations themselves succeeded or were undone. */
  warnings: string[];
  failure?: DeployFailure;
}

/** The parts of a deploy's result that run and revert report as they are. */
export function outcomeOf(deploy: DeployResult): Pick<DeployResult, "backup" | "maintenance" | "failure" | "warnings"> {
  return { backup: deploy.backup, maintenance: deploy.maintenance, failure: deploy.failure, warnings: deploy.warnings };
}

/** Ctrl-C cancels over the server session: the database's own connection is busy with the migration. */
function cancelVia(state: DbState): ((pid: number) => Promise<unknown>) | undefined {
  const session = state.session;
  return session ? (pid) => session.client.query(`SELECT pg_cancel_backend($1)`, [pid]) : undefined;
}

async function undo(config: Config, done: Step[], options: DeployOptions, failure: DeployFailure): Promise<void> {
  for (const step of [...done].reverse()) {
    const direction = step.direction === "up" ? "down" : "up";
    try {
      await applyMigration(step.state.dataSource, step.file, direction, {
        runId: options.runId, command: options.reason, timeouts: options.timeouts, cancelBackend: cancelVia(step.state),
        onRetry: (retry) => options.onLockRetry?.({ ...retry, db: step.state.db, migration: step.file.name }),
        evolve: config.evolve, onEvent: (event) => options.onEvent?.({ ...event, db: step.state.db }),
      });
      failure.undone.push({ db: step.state.db, name: step.file.name, direction });
    } catch (error) {
      failure.undoFailed = new MigrationError(`undoing ${step.file.name} failed: ${describeError(error, step.state.target).message}`, step.state.db).line;
      return;
    }
  }
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
 * plain rerun is always enough after a crash. Returns warnings.
 */
export async function settleMaintenance(config: Config, states: DbState[]): Promise<string[]> {
  const warnings: string[] = [];
  const settings = await openSettings(config, states, warnings);
  if (!settings) return [];
  try {
    const dead = await repairStaleMaintenance(settings.q);
    if (dead) warnings.push(`admindb: maintenance_mode was left on by run ${dead}, which is no longer running: put back to its earlier value`);
  } catch (error) {
    warnings.push(`admindb: could not check maintenance_mode: ${(error as Error).message.split("\n")[0]}`);
  } finally {
    await settings.close();
  }
  return warnings;
}

export async function executeSteps(config: Config, states: DbState[], steps: Step[], options: DeployOptions): Promise<DeployResult> {
  const touched = states.filter((s) => steps.some((st) => st.state === s));
  const result: DeployResult = { steps: [], maintenance: "not-available", schemaVersionRecorded: false, pruned: [], warnings: [] };

  if (options.backup) {
    // A database this run created is empty: there is nothing to back up.
    const requests = touched.filter((s) => !s.created).map(backupRequestOf);
    result.backup = await backupDatabases(requests, { backupDir: config.backupDir, runId: options.runId, reason: options.reason, compression: config.backupCompression, progress: options.progress });
    if (options.backupKeep !== undefined && requests.length) result.pruned = pruneBackups(config.backupDir, options.backupKeep);
  } else {
    result.backup = { skipped: true };
  }
  const restoreCommand = result.backup && "manifest" in result.backup && result.backup.manifest.databases.length
    ? `npm run db:restore -- ${options.runId}`
    : undefined;

  const settings = await openSettings(config, states, result.warnings);
  try {
    const maintenance = settings ? await enableMaintenance(settings.q, options.runId) : undefined;
    const done: Step[] = [];
    try {
      await Promise.all(touched.map((s) => ensureBookkeeping(s.dataSource)));
      for (const step of steps) {
        if (options.signal?.aborted) {
          result.failure = { db: step.state.db, message: "interrupted before this step", undone: [], restoreCommand };
          break;
        }
        const lost = touched.find((s) => s.session?.lost);
        if (lost) {
          result.failure = { db: lost.db, message: `lost the deploy lock session to ${lost.session!.server} (its locks are gone): stopped before ${step.file.name}`, undone: [], restoreCommand };
          break;
        }
        const event = { db: step.state.db, step: step.direction === "up" ? "applying" : "reverting", detail: step.file.name };
        options.progress?.({ ...event, phase: "start" });
        try {
          const r = await applyMigration(step.state.dataSource, step.file, step.direction, {
            runId: options.runId, command: options.reason, timeouts: options.timeouts, signal: options.signal, cancelBackend: cancelVia(step.state),
            onRetry: (retry) => options.onLockRetry?.({ ...retry, db: step.state.db, migration: step.file.name }),
            evolve: config.evolve, onEvent: (e) => options.onEvent?.({ ...e, db: step.state.db }),
          });
          options.progress?.({ ...event, phase: "end" });
          result.steps.push({ ...r, db: step.state.db });
          done.push(step);
        } catch (error) {
          options.progress?.({ ...event, phase: "end" });
          let message = options.signal?.aborted ? "interrupted (rolled back)" : describeError(error, step.state.target).message;
          // Outside a transaction nothing rolled back: say so, or the next run trips over the leftovers.
          // Expand/contract steps are each safe to run again (src/evolve): no partial state to check by hand.
          if ((step.file.migration as { evolve?: unknown }).evolve) message += " (its steps are safe to run again)";
          else if ((step.file.migration as { transaction?: boolean }).transaction === false) message += " (it ran outside a transaction: check for partial changes before running again; an INVALID index it built was dropped)";
          else if (/cannot run inside a transaction block/.test(message)) message += " (set `transaction = false` in the migration: CONCURRENTLY runs outside a transaction)";
          result.failure = { db: step.state.db, migration: step.file.name, message, undone: [], restoreCommand };
          break;
        }
      }
      if (result.failure) await undo(config, done, options, result.failure);
    } finally {
      if (settings && maintenance) {
        if (result.failure?.undoFailed) {
          result.maintenance = "left-on";
          await markUndoFailed(settings.q, options.runId).catch(() => undefined);
        }
        else if (!result.failure && options.keepMaintenance) {
          // In the plain shape a person would set: no later run takes it for a dead run's and puts it back.
          await setMaintenance(settings.q, { enabled: true, message: MAINTENANCE_MESSAGE });
          result.maintenance = "kept-on";
        } else {
          try {
            const put = await restoreMaintenance(settings.q, maintenance, options.runId);
            if (!put) result.warnings.push("admindb: maintenance_mode was changed by someone else during the run: left as they set it");
            result.maintenance = "restored";
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
          const applied = await readApplied(s.dataSource);
          latest[s.db] = applied[applied.length - 1]?.name ?? null;
        }
        result.schemaVersionRecorded = await recordSchemaVersion(settings.q, options.runId, latest);
      } catch (error) {
        result.warnings.push(`admindb: schema_version not recorded: ${(error as Error).message.split("\n")[0]}`);
      }
    }
  } finally {
    await settings?.close();
  }
  return result;
}
