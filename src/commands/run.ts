// migration:run: the deploy. Takes the deploy locks, then reads and plans every database from what
// it finds under them (all checks before any change); backs up, turns on maintenance mode and
// applies what is pending in the order authdb, apidb, admindb; on failure undoes what this run
// applied (see deploy/steps.ts).
import type { Config } from "../config";
import type { DbName } from "../databases";
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
import { DeployOptions, DeployResult, executeSteps, outcomeOf, settleMaintenance } from "../deploy/steps";
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
  /** Deploy migrations whose lint findings are not accepted (with a warning). */
  unsafe?: boolean;
  runId?: string;
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
  /** Squashes whose replaced migrations this database had applied: its history now names the squash. */
  squashAdopted?: Array<{ squash: string; replaced: number }>;
}

export interface RunReport {
  command: "run";
  runId: string;
  status: "applied" | "nothing-to-do" | "dry-run" | "failed";
  databases: DbRunResult[];
  backup?: DeployResult["backup"];
  maintenance?: DeployResult["maintenance"];
  failure?: DeployResult["failure"];
  warnings?: string[];
}

/**
 * Pending migrations per database; with `to`, only those up to and including its timestamp, in
 * every database: timestamps are one timeline across the databases (generate gives the files of
 * one change the same timestamp, and so the same name, in each database it touches).
 */
function selectPending(states: DbState[], to?: string): Map<DbName, MigrationFile[]> {
  if (to === undefined) return new Map(states.map((s) => [s.db, [...s.pending]]));
  const [target] = findMigrations(states.flatMap((s) => s.files), to);
  return new Map(states.map((s) => [s.db, s.pending.filter((p) => p.timestamp <= target.timestamp)]));
}

const nothingIn = (todo: Map<DbName, MigrationFile[]>) => [...todo.values()].every((t) => t.length === 0);

export async function runMigrations(config: Config, options: RunOptions): Promise<RunReport> {
  const runId = options.runId ?? newRunId();
  const report: RunReport = { command: "run", runId, status: "nothing-to-do", databases: [] };
  /** Decides what to apply from `states` and checks all of it; returns the work, or nothing to do. */
  const plan = async (states: DbState[]) => {
    const todo = selectPending(states, options.to);
    report.databases = states.map((s) => ({ db: s.db, createdDatabase: false, pending: todo.get(s.db)!.map((m) => m.name), applied: [] }));
    // In parallel; the first failure in deploy order is the one reported.
    const lints = await settleAll(states.map((s) => checkPlan(s, todo.get(s.db)!, { unsafe: options.unsafe || options.dryRun })));
    for (const lint of lints) {
      if (!lint?.findings.length) continue;
      resultOf(lint.db).lint = lint.findings;
      if (options.unsafe && !options.dryRun) {
        (report.warnings ??= []).push(`${lint.db}: --unsafe: deploying ${lint.findings.length} lint finding${lint.findings.length === 1 ? "" : "s"} no migration accepts (first: ${lint.findings[0].file}: ${lint.findings[0].rule})`);
      }
    }
    return todo;
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
      const warnings = await settleMaintenance(config, states);
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
      const deploy = await executeSteps(config, states, steps, { ...options, runId, reason: "migration:run" });
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
