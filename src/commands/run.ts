// migration:run: the deploy. Plans all databases in parallel, then under the locks applies what is
// pending in the order authdb, apidb, admindb; on failure reverts what this run applied.
import type { Config } from "../config";
import { describeError } from "../connect";
import type { DbName } from "../databases";
import { MigrationError, UsageError } from "../errors";
import { ensureBookkeeping, readApplied } from "../history";
import { withLocks } from "../locks";
import type { MigrationFile } from "../migration-files";
import { applyMigration, StepResult, Timeouts } from "../migrator";
import { checkAdoptable, checkExtensions, checkFilesPresent, closeStates, createMissingDatabases, DbState, readStates } from "../plan";
import { newRunId } from "../run-id";
import { captureSql } from "../dry-run";

export interface RunOptions {
  dbs: DbName[];
  /** Stop after this migration (in whichever database has it). */
  to?: string;
  dryRun?: boolean;
  timeouts: Timeouts;
  lockTimeoutMs: number;
}

export interface DbRunResult {
  db: DbName;
  createdDatabase: boolean;
  pending: string[];
  applied: StepResult[];
  /** --dry-run: the SQL each pending migration would execute. */
  sql?: Record<string, string[]>;
}

export interface RunFailure {
  db: DbName;
  migration?: string;
  message: string;
  /** Migrations of this run that were undone because of the failure, newest first. */
  reverted: Array<{ db: DbName; name: string }>;
  /** True when undoing them failed too: the databases need a look (or a restore). */
  revertFailed?: string;
}

export interface RunReport {
  command: "run";
  runId: string;
  status: "applied" | "nothing-to-do" | "dry-run" | "failed";
  databases: DbRunResult[];
  failure?: RunFailure;
}

function pendingUpTo(states: DbState[], to?: string): Map<DbName, MigrationFile[]> {
  const out = new Map<DbName, MigrationFile[]>();
  if (to !== undefined) {
    const owner = states.find((s) => s.files.some((f) => f.name === to));
    if (!owner) throw new UsageError(`unknown migration "${to}" (not in src/migrations/${states.map((s) => s.db).join("|")})`);
  }
  for (const s of states) out.set(s.db, [...s.pending]);
  if (to === undefined) return out;
  // Everything up to and including `to`, in deploy order: earlier databases whole, later ones untouched.
  let reached = false;
  for (const s of states) {
    if (reached) {
      out.set(s.db, []);
      continue;
    }
    const index = s.files.findIndex((f) => f.name === to);
    if (index >= 0) {
      out.set(s.db, s.pending.filter((p) => p.timestamp <= s.files[index].timestamp));
      reached = true;
    }
  }
  return out;
}

export async function runMigrations(config: Config, options: RunOptions): Promise<RunReport> {
  const runId = newRunId();
  const states = await readStates(config, options.dbs);
  const report: RunReport = { command: "run", runId, status: "nothing-to-do", databases: [] };
  try {
    let todo = pendingUpTo(states, options.to);
    for (const s of states) {
      checkFilesPresent(s);
      if (todo.get(s.db)!.length) {
        checkAdoptable(s);
        await checkExtensions(s, todo.get(s.db)!);
      }
    }
    const resultOf = new Map<DbName, DbRunResult>();
    for (const s of states) {
      const result = { db: s.db, createdDatabase: false, pending: todo.get(s.db)!.map((m) => m.name), applied: [] };
      resultOf.set(s.db, result);
      report.databases.push(result);
    }
    if (states.every((s) => todo.get(s.db)!.length === 0)) return report;

    if (options.dryRun) {
      report.status = "dry-run";
      for (const s of states) {
        const sql: Record<string, string[]> = {};
        for (const m of todo.get(s.db)!) sql[m.name] = await captureSql(s.dataSource, m, "up");
        resultOf.get(s.db)!.sql = sql;
      }
      return report;
    }

    await createMissingDatabases(states);
    for (const s of states) resultOf.get(s.db)!.createdDatabase = s.created;
    await withLocks(config, options.dbs, options.lockTimeoutMs, async () => {
      // Another run may have applied some of it while we waited for the locks: read again.
      for (const s of states) {
        const applied = new Set((await readApplied(s.dataSource)).map((a) => a.name));
        s.pending = s.pending.filter((p) => !applied.has(p.name));
      }
      todo = pendingUpTo(states, options.to);
      for (const s of states) resultOf.get(s.db)!.pending = todo.get(s.db)!.map((m) => m.name);
      if (states.every((s) => todo.get(s.db)!.length === 0)) return;

      report.status = "applied";
      for (const s of states) if (todo.get(s.db)!.length) await ensureBookkeeping(s.dataSource);
      const done: Array<{ state: DbState; file: MigrationFile }> = [];
      for (const s of states) {
        for (const file of todo.get(s.db)!) {
          try {
            const step = await applyMigration(s.dataSource, file, "up", { runId, timeouts: options.timeouts });
            resultOf.get(s.db)!.applied.push(step);
            done.push({ state: s, file });
          } catch (error) {
            report.status = "failed";
            report.failure = {
              db: s.db, migration: file.name, message: describeError(error, s.target).message, reverted: [],
            };
            await undo(done, runId, options.timeouts, report.failure);
            return;
          }
        }
      }
    });
    return report;
  } finally {
    await closeStates(states);
  }
}

/** Reverts, newest first, what this run applied before the failure. */
async function undo(done: Array<{ state: DbState; file: MigrationFile }>, runId: string, timeouts: Timeouts, failure: RunFailure): Promise<void> {
  for (const { state, file } of [...done].reverse()) {
    try {
      await applyMigration(state.dataSource, file, "down", { runId, timeouts });
      failure.reverted.push({ db: state.db, name: file.name });
    } catch (error) {
      failure.revertFailed = new MigrationError(`reverting ${file.name} failed: ${describeError(error, state.target).message}`, state.db).line;
      return;
    }
  }
}
