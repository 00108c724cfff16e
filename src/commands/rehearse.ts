// migration:rehearse: each database's pending migrations up, down and up again on a scratch copy
// of it (a fresh pg_dump, or a verified backup), timed and observed: the lock each statement takes,
// tables rewritten, rows before and after, and whether down then up ends at the same schema. The
// real databases are only read: no deploy lock, no bookkeeping, no maintenance mode. The plan's
// checks are migration:run's (history, files load, extensions); lint findings are reported, not
// refused (the rehearsal is where to see what a flagged migration does).
import * as path from "path";
import type { BackupEntry, Progress } from "../backup/backup";
import { locateBackup } from "../backup/restore";
import { parsePostgresUrl, type Config } from "../config";
import { DATABASES, type DbName } from "../databases";
import { UsageError } from "../errors";
import { checkPlan, closeStates, readStates } from "../deploy/plan";
import { DbRehearsal, rehearseDatabase, RehearsalContext, RehearsalFailure, RehearsalInput } from "../rehearsal/rehearsal";
import { assumedRate, COPY_JOBS } from "../rehearsal/copy";
import { removeLeftovers } from "../rehearsal/scratch";
import { newRunId } from "../run-id";
import type { Timeouts } from "../runner/migrator";

export interface RehearseOptions {
  dbs: DbName[];
  /** A backup run id (or folder, or `<db>.dump` file) to copy from instead of the live databases. */
  fromBackup?: string;
  /** An empty scratch database (for a role that may not create databases); emptied after. */
  scratchUrl?: string;
  /** migration:run's timeouts (MIGRATION_LOCK_TIMEOUT, ...): the rehearsal applies the same. */
  timeouts: Timeouts;
  progress?: Progress;
  /** Ctrl-C: the running statement is cancelled, nothing more runs, the scratch databases are dropped. */
  signal?: AbortSignal;
  runId?: string;
  /** Parallel pg_dump / pg_restore jobs (default: a job per core, at most 8). */
  jobs?: number;
}

export interface RehearseReport {
  command: "rehearse";
  runId: string;
  /**
   * Every pending migration went up, down and up again on the copy, the downs brought the schema
   * back, and up again ended at the schema the first up built.
   */
  ok: boolean;
  databases: DbRehearsal[];
  /** Databases not rehearsed, and why (`nothing pending`, `not in backup <id>`, `interrupted`). */
  skipped: Array<{ db: DbName; reason: string }>;
  /** Scratch databases and temp directories of killed rehearsals, removed at the start. */
  removedLeftovers: string[];
  warnings: string[];
  /** The first failure, in the order authdb, apidb, admindb. */
  failure?: RehearsalFailure;
}

/** A --scratch-url must be a postgres URL, and none of the real databases (it is emptied after). */
function checkScratchUrl(config: Config, scratchUrl: string): void {
  const parsed = parsePostgresUrl(scratchUrl, "--scratch-url");
  const where = (u: URL) => `${u.hostname}:${u.port || 5432}/${decodeURIComponent(u.pathname.slice(1))}`;
  if (!decodeURIComponent(parsed.pathname.slice(1))) throw new UsageError("--scratch-url names no database (postgres://user@host:5432/<scratch>)");
  for (const db of DATABASES) {
    if (where(new URL(config.targets[db].url)) === where(parsed)) throw new UsageError(`--scratch-url is ${db}'s own database: give an empty scratch database`);
  }
}

/**
 * Rehearses the pending migrations of `options.dbs`, one database after the other.
 *
 *   const report = await rehearseMigrations(config, { dbs: ["apidb"], timeouts: DEFAULT_TIMEOUTS });
 *   for (const m of report.databases[0].migrations) console.log(m.name, m.phase, m.durationMs);
 *   if (!report.ok) process.exitCode = 1;
 */
export async function rehearseMigrations(config: Config, options: RehearseOptions): Promise<RehearseReport> {
  const runId = options.runId ?? newRunId();
  const report: RehearseReport = { command: "rehearse", runId, ok: true, databases: [], skipped: [], removedLeftovers: [], warnings: [] };

  if (options.scratchUrl) checkScratchUrl(config, options.scratchUrl);
  const backup = options.fromBackup !== undefined ? locateBackup(config.backupDir, options.fromBackup) : undefined;
  const entries = new Map<DbName, BackupEntry>((backup?.manifest.databases ?? []).filter((e) => !backup?.only || e.db === backup.only).map((e) => [e.db, e]));
  let dbs = options.dbs;
  if (backup) {
    for (const db of dbs.filter((d) => !entries.has(d))) report.skipped.push({ db, reason: `not in backup ${backup.manifest.runId}` });
    dbs = dbs.filter((d) => entries.has(d));
    if (!dbs.length) throw new UsageError(`backup ${backup.manifest.runId} has none of ${options.dbs.join(", ")}`);
  }

  // The plan: what is pending where, checked as migration:run checks it. Read, then let go.
  const inputs: RehearsalInput[] = [];
  const states = await readStates(config, dbs);
  try {
    for (const s of states) {
      const entry = entries.get(s.db);
      const applied = entry ? new Set(entry.applied) : undefined;
      const pending = applied ? s.files.filter((f) => !applied.has(f.name)) : s.pending;
      if (!pending.length) {
        report.skipped.push({ db: s.db, reason: entry ? `nothing pending after backup ${backup!.manifest.runId}` : "nothing pending" });
        continue;
      }
      const lint = await checkPlan(s, pending, { unsafe: true });
      if (lint?.findings.length) {
        const [first] = lint.findings;
        report.warnings.push(`${s.db}: ${lint.findings.length} lint finding${lint.findings.length === 1 ? "" : "s"} no migration accepts; migration:run refuses ${lint.findings.length === 1 ? "it" : "them"} without --unsafe (first: ${first.file}: ${first.rule})`);
      }
      inputs.push({
        db: s.db, target: s.target, exists: s.exists, pending,
        ...(entry ? { backup: { runId: backup!.manifest.runId, file: path.join(backup!.dir, entry.file), entry } } : {}),
      });
    }
  } finally {
    await closeStates(states);
  }

  const leftovers = await removeLeftovers(options.dbs.map((db) => config.targets[db]), config.connectTimeoutMs, runId);
  report.removedLeftovers = leftovers.removed;
  report.warnings.push(...leftovers.warnings);

  const context: RehearsalContext = {
    runId, timeouts: options.timeouts, connectTimeoutMs: config.connectTimeoutMs, jobs: options.jobs ?? COPY_JOBS,
    rate: assumedRate(), scratchUrl: options.scratchUrl, progress: options.progress, signal: options.signal,
  };
  for (const input of inputs) {
    if (options.signal?.aborted) {
      report.skipped.push({ db: input.db, reason: "interrupted" });
      continue;
    }
    const result = await rehearseDatabase(input, context);
    report.databases.push(result);
    report.warnings.push(...result.warnings.map((w) => `${input.db}: ${w}`));
    if (result.failure) report.failure ??= result.failure;
  }
  report.ok = !report.failure && report.databases.every((d) => d.sameSchemaAfterDownUp !== false && d.downRestoresSchema !== false);
  return report;
}
