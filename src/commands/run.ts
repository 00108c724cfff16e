// migration:run: the deploy. Takes the deploy locks, then reads and plans every database from what
// it finds under them (all checks before any change); backs up, turns on maintenance mode and
// applies what is pending in the order authdb, apidb, admindb; on failure undoes what this run
// applied (see deploy/steps.ts).
import type { Config } from "../config";
import { DATABASES, DbName } from "../databases";
import { MigrationError } from "../errors";
import type { LockWait } from "../runner/locks";
import type { LintFinding } from "../safety/lint";
import { findMigrations } from "../runner/migration-files";
import type { MigrationFile } from "../runner/migration-files";
import type { StepResult } from "../runner/migrator";
import { checkPlan, closeStates, createMissingDatabases, DbState, readStates, withLockedStates } from "../deploy/plan";
import { newRunId } from "../run-id";
import { settleAll } from "../postgres/sql";
import { captureSql } from "../runner/dry-run";
import { plannedDataLoss } from "../deploy/data-loss";
import { DeployOptions, DeployResult, executeSteps, outcomeOf, settleMaintenance } from "../deploy/steps";
import { changesOf, oldColumnUse, OldColumnUse } from "../evolve/contract-checks";
import { baseName } from "../runner/migration-files";
import { rewriteToSquash } from "../runner/squashed";

export interface RunOptions extends Omit<DeployOptions, "runId" | "reason"> {
  dbs: DbName[];
  /** Stop after this migration (in whichever database has it). */
  to?: string;
  dryRun?: boolean;
  /** Longest wait for another run's deploy lock. */
  lockTimeoutMs: number;
  /** Told once per database when another run holds its lock. */
  onWait?: LockWait;
  /** Told, before anything changes, what the pending migrations will drop that holds data. */
  onDataLoss?: (db: DbName, lines: string[]) => void;
  /** Deploy migrations whose lint findings are not accepted (with a warning). */
  unsafe?: boolean;
  runId?: string;
  /**
   * "contract": migration:complete, which applies pending contract migrations (and only those);
   * default: migration:run, which applies the rest and holds contract migrations back.
   */
  phase?: "contract";
  /** migration:complete: contract even if a client wrote an old column within `contractIdle`. */
  force?: boolean;
  /** migration:complete: how long no client may have written an old column (MIGRATION_CONTRACT_IDLE). */
  contractIdle?: string;
}

export interface DbRunResult {
  db: DbName;
  createdDatabase: boolean;
  pending: string[];
  applied: StepResult[];
  /** --dry-run: the SQL each pending migration would execute. */
  sql?: Record<string, string[]>;
  /** Lint findings the pending migrations do not accept (--dry-run and --unsafe show them). */
  lint?: LintFinding[];
  /** What the pending migrations drop that holds data, counted before they ran. */
  dataLoss?: string[];
  /** migration:run: pending contract migrations it held back for migration:complete. */
  held?: string[];
  /** migration:complete: per contract migration, when a client last wrote each old column. */
  oldColumns?: Array<OldColumnUse & { migration: string }>;
  /** Squashes whose replaced migrations this database had applied: its history now names the squash. */
  squashAdopted?: Array<{ squash: string; replaced: number }>;
}

export interface RunReport {
  command: "run" | "complete";
  runId: string;
  status: "applied" | "nothing-to-do" | "dry-run" | "failed";
  databases: DbRunResult[];
  backup?: DeployResult["backup"];
  maintenance?: DeployResult["maintenance"];
  failure?: DeployResult["failure"];
  warnings?: string[];
  pruned?: DeployResult["pruned"];
}

/**
 * Pending migrations per database; with `to`, only those up to and including its timestamp, in
 * every database: timestamps are one timeline across the databases (generate gives the files of
 * one change the same timestamp, and so the same name, in each database it touches). A run takes
 * all but contract migrations; migration:complete only those, once their expand is applied.
 */
function selectPending(states: DbState[], to: string | undefined, phase: RunOptions["phase"]): Map<DbName, MigrationFile[]> {
  const limit = to === undefined ? Infinity : findMigrations(states.flatMap((s) => s.files), to)[0].timestamp;
  return new Map(states.map((s) => {
    const pending = s.pending.filter((p) => p.timestamp <= limit && (p.phase === "contract") === (phase === "contract"));
    if (phase === "contract") {
      for (const c of pending) {
        const expand = s.pending.find((p) => p.phase === "expand" && baseName(p) === baseName(c) && p.timestamp < c.timestamp);
        if (expand) throw new MigrationError(`${c.name} (contract) needs its expand ${expand.name}, which is not applied: run migration:run first`, s.db);
      }
    }
    return [s.db, pending];
  }));
}

const nothingIn = (todo: Map<DbName, MigrationFile[]>) => [...todo.values()].every((t) => t.length === 0);

export async function runMigrations(config: Config, options: RunOptions): Promise<RunReport> {
  const runId = options.runId ?? newRunId();
  const complete = options.phase === "contract";
  const report: RunReport = { command: complete ? "complete" : "run", runId, status: "nothing-to-do", databases: [] };
  /** Decides what to apply from `states` and checks all of it; returns the work, or nothing to do. */
  const plan = async (states: DbState[]) => {
    const todo = selectPending(states, options.to, options.phase);
    report.databases = states.map((s) => {
      const held = complete ? [] : s.pending.filter((p) => p.phase === "contract").map((p) => p.name);
      return { db: s.db, createdDatabase: false, pending: todo.get(s.db)!.map((m) => m.name), applied: [], ...(held.length ? { held } : {}) };
    });
    // In parallel; the first failure in deploy order is the one reported.
    const lints = await settleAll(states.map((s) => checkPlan(s, todo.get(s.db)!, { unsafe: options.unsafe || options.dryRun })));
    for (const [i, s] of states.entries()) {
      const lines = await plannedDataLoss(s, todo.get(s.db)!, "up", lints[i]?.recorded);
      if (!lines.length) continue;
      resultOf(s.db).dataLoss = lines;
      options.onDataLoss?.(s.db, lines);
    }
    for (const lint of lints) {
      if (!lint?.findings.length) continue;
      resultOf(lint.db).lint = lint.findings;
      if (options.unsafe && !options.dryRun) {
        (report.warnings ??= []).push(`${lint.db}: --unsafe: deploying ${lint.findings.length} lint finding${lint.findings.length === 1 ? "" : "s"} no migration accepts (first: ${lint.findings[0].file}: ${lint.findings[0].rule})`);
      }
    }
    if (complete) await checkOldColumnsIdle(states, todo);
    return todo;
  };
  /** migration:complete: refuses while a client wrote an old column within the idle window (unless --force). */
  const checkOldColumnsIdle = async (states: DbState[], todo: Map<DbName, MigrationFile[]>) => {
    for (const s of states) {
      const files = todo.get(s.db)!;
      if (!files.length || !s.exists) continue;
      const uses: Array<OldColumnUse & { migration: string }> = [];
      for (const f of files) {
        for (const use of await oldColumnUse(s.dataSource, changesOf(f.migration), options.contractIdle ?? "5min")) uses.push({ ...use, migration: f.name });
      }
      resultOf(s.db).oldColumns = uses;
      const recent = uses.find((u) => u.recent);
      if (recent && !options.force && !options.dryRun) {
        throw new MigrationError(`${recent.migration}: a client wrote ${recent.table}.${recent.column} ${recent.secondsAgo}s ago (at ${recent.lastWrite}), within MIGRATION_CONTRACT_IDLE ${options.contractIdle ?? "5min"}: an old service may still use it; wait, or contract anyway with --force`, s.db);
      }
    }
  };
  const resultOf = (db: DbName) => report.databases.find((d) => d.db === db)!;

  if (options.dryRun) {
    // Reads only: no lock, so a dry run never waits behind a deploy.
    const states = await readStates(config, options.dbs);
    try {
      const todo = await plan(states);
      if (nothingIn(todo)) return report;
      report.status = "dry-run";
      for (const s of states) {
        const sql: Record<string, string[]> = {};
        for (const m of todo.get(s.db)!) sql[m.name] = await captureSql(s.dataSource, m, "up");
        resultOf(s.db).sql = sql;
      }
      return report;
    } finally {
      await closeStates(states);
    }
  }

  // Everything that decides what this run does is read under the deploy lock: a run that waited
  // for another finds its work done.
  await withLockedStates(config, options.dbs, { runId, lockTimeoutMs: options.lockTimeoutMs, onWait: options.onWait }, async (states) => {
    const todo = await plan(states);
    // Checked, under the lock: a database that applied what a squash replaces now records the squash.
    for (const s of states) {
      for (const adoption of s.squashAdoptions) {
        await rewriteToSquash(s.dataSource, adoption, s.history, runId, "migration:run");
        (resultOf(s.db).squashAdopted ??= []).push({ squash: adoption.squash.name, replaced: adoption.replaced.length });
      }
    }
    if (nothingIn(todo)) {
      // Every database up to date (no --db, no --to): the job a run marked undo_failed left is done.
      const finished = options.to === undefined && DATABASES.every((db) => states.some((s) => s.db === db));
      const warnings = await settleMaintenance(config, states, finished);
      if (warnings.length) report.warnings = [...(report.warnings ?? []), ...warnings];
      return;
    }
    try {
      try {
        await createMissingDatabases(states);
      } finally {
        for (const s of states) resultOf(s.db).createdDatabase = s.created;
      }
      const steps = states.flatMap((state) => todo.get(state.db)!.map((file) => ({ state, file, direction: "up" as const })));
      const finishes = options.to === undefined && DATABASES.every((db) => states.some((s) => s.db === db));
      const deploy = await executeSteps(config, states, steps, { ...options, runId, reason: complete ? "migration:complete" : "migration:run", finishes });
      for (const step of deploy.steps) resultOf(step.db).applied.push(step);
      const before = report.warnings ?? [];
      Object.assign(report, { status: deploy.failure ? "failed" : "applied", ...outcomeOf(deploy) });
      if (before.length) report.warnings = [...before, ...(report.warnings ?? [])];
    } catch (error) {
      // An error after databases were created must say so: they are the one change already made.
      const created = states.filter((s) => s.created).map((s) => s.target.database);
      if (created.length && error instanceof MigrationError) {
        throw new MigrationError(`${error.message} (this run created the empty database${created.length > 1 ? "s" : ""} ${created.join(", ")})`, error.db, error.exitCode);
      }
      throw error;
    }
  });
  return report;
}
