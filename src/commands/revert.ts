// migration:revert: undo the last deploy run in every database it touched (no flags), or, in one
// database, the last N migrations (--steps) or everything after a migration (--to <name>|base).
import type { Config } from "../config";
import { DATABASES, DbName } from "../databases";
import { UsageError } from "../errors";
import { DeployOptions, DeployResult, executeSteps, outcomeOf, settleMaintenance } from "../deploy/steps";
import type { LockWait } from "../runner/locks";
import { checkLoadable, findMigrations, MigrationFile } from "../runner/migration-files";
import type { StepResult } from "../runner/migrator";
import { checkExists, checkIntegrity, closeStates, DbState, readStates, withLockedStates } from "../deploy/plan";
import { newRunId } from "../run-id";
import { captureSql } from "../runner/dry-run";
import { plannedDataLoss } from "../deploy/data-loss";

export type RevertTarget =
  | { kind: "last-run" }
  | { kind: "steps"; db: DbName; steps: number }
  | { kind: "to"; db: DbName; to: string };

export interface RevertOptions extends Omit<DeployOptions, "runId" | "reason"> {
  target: RevertTarget;
  /** Told, before anything changes, what the revert will drop that holds data. */
  onDataLoss?: (db: DbName, lines: string[]) => void;
  dryRun?: boolean;
  lockTimeoutMs: number;
  onWait?: LockWait;
  runId?: string;
}

export interface DbRevertResult {
  db: DbName;
  toRevert: string[];
  reverted: StepResult[];
  sql?: Record<string, string[]>;
  /** What the downs drop that holds data, counted before they ran: `profiles.note: 1234 values will be dropped`. */
  dataLoss: string[];
}

export interface RevertReport {
  command: "revert";
  runId: string;
  /** The deploy run undone, when reverting the last run. */
  undoesRun?: string;
  status: "reverted" | "nothing-to-do" | "dry-run" | "failed";
  databases: DbRevertResult[];
  backup?: DeployResult["backup"];
  maintenance?: DeployResult["maintenance"];
  failure?: DeployResult["failure"];
  warnings?: string[];
  pruned?: DeployResult["pruned"];
}

/** What to undo in each database, newest first, as migration files. */
function selectReverts(states: DbState[], target: RevertTarget): { plan: Map<DbName, MigrationFile[]>; undoesRun?: string } {
  const plan = new Map<DbName, MigrationFile[]>();
  // checkIntegrity has made sure every applied migration has its file.
  const fileOf = (s: DbState, name: string) => s.files.find((f) => f.name === name)!;
  if (target.kind === "last-run") {
    // The newest migration:run (or migration:complete) that left something applied, across the databases. A failed run
    // (everything undone) and the undo steps of a failed revert do not count.
    const ups = new Map<DbName, Array<{ runId: string; name: string; at: number }>>();
    const lastAt = new Map<string, number>();
    for (const s of states) {
      const applied = new Set(s.applied.map((a) => a.name));
      const stillApplied = s.history
        .filter((h) => (h.command === "migration:run" || h.command === "migration:complete") && h.direction === "up" && applied.has(h.name))
        .map((h) => ({ runId: h.runId, name: h.name, at: h.appliedAt.getTime() }));
      ups.set(s.db, stillApplied);
      for (const u of stillApplied) lastAt.set(u.runId, Math.max(lastAt.get(u.runId) ?? 0, u.at));
    }
    const undoesRun = [...lastAt.entries()].sort((a, b) => b[1] - a[1] || b[0].localeCompare(a[0]))[0]?.[0];
    for (const s of states) {
      const ofRun = new Set(ups.get(s.db)!.filter((u) => u.runId === undoesRun).map((u) => u.name));
      const names = s.applied.filter((a) => ofRun.has(a.name)).map((a) => a.name).reverse();
      plan.set(s.db, names.map((n) => fileOf(s, n)));
    }
    return { plan, undoesRun };
  }
  const s = states.find((st) => st.db === target.db)!;
  const applied = [...s.applied].reverse(); // newest first
  let names: string[];
  if (target.kind === "steps") {
    if (target.steps > applied.length) {
      throw new UsageError(`--steps ${target.steps}: only ${applied.length} migration${applied.length === 1 ? " is" : "s are"} applied`, s.db);
    }
    names = applied.slice(0, target.steps).map((a) => a.name);
  } else if (target.to === "base") {
    names = applied.map((a) => a.name);
  } else {
    const [wanted] = findMigrations(s.files, target.to, s.db);
    const index = applied.findIndex((a) => a.name === wanted.name);
    if (index < 0) throw new UsageError(`migration ${wanted.name} is not applied`, s.db);
    names = applied.slice(0, index).map((a) => a.name);
  }
  plan.set(s.db, names.map((n) => fileOf(s, n)));
  return { plan };
}

export async function revertMigrations(config: Config, options: RevertOptions): Promise<RevertReport> {
  const dbs = options.target.kind === "last-run" ? [...DATABASES] : [options.target.db];
  const runId = options.runId ?? newRunId();
  const report: RevertReport = { command: "revert", runId, status: "nothing-to-do", databases: [] };
  const plan = async (all: DbState[]) => {
    // The last run may have touched only some databases; those that do not exist hold nothing to undo.
    const states = options.target.kind === "last-run" ? all.filter((s) => s.exists) : all;
    const target = options.target;
    if (target.kind === "to" && target.to !== "base") findMigrations(states[0].files, target.to, target.db);
    states.forEach(checkExists);
    states.forEach(checkIntegrity);
    const { plan: todo, undoesRun } = selectReverts(states, target);
    report.undoesRun = undoesRun;
    report.databases = states.map((s) => ({ db: s.db, toRevert: todo.get(s.db)!.map((f) => f.name), reverted: [], dataLoss: [] }));
    for (const s of states) checkLoadable(s.db, todo.get(s.db)!);
    for (const s of states) {
      const lines = await plannedDataLoss(s, todo.get(s.db)!, "down");
      resultOf(s.db).dataLoss = lines;
      if (lines.length) options.onDataLoss?.(s.db, lines);
    }
    return { states, todo, nothing: [...todo.values()].every((p) => p.length === 0) };
  };
  const resultOf = (db: DbName) => report.databases.find((d) => d.db === db)!;

  if (options.dryRun) {
    const all = await readStates(config, dbs);
    try {
      const { states, todo, nothing } = await plan(all);
      if (nothing) return report;
      report.status = "dry-run";
      for (const s of states) {
        const sql: Record<string, string[]> = {};
        for (const f of todo.get(s.db)!) sql[f.name] = await captureSql(s.dataSource, f, "down");
        resultOf(s.db).sql = sql;
      }
      return report;
    } finally {
      await closeStates(all);
    }
  }

  await withLockedStates(config, dbs, { runId, lockTimeoutMs: options.lockTimeoutMs, onWait: options.onWait }, async (all) => {
    const { states, todo, nothing } = await plan(all);
    if (nothing) {
      const warnings = await settleMaintenance(config, states);
      if (warnings.length) report.warnings = warnings;
      return;
    }
    // Newest database first: admindb, apidb, authdb.
    const steps = [...states].reverse().flatMap((state) => todo.get(state.db)!.map((file) => ({ state, file, direction: "down" as const })));
    const deploy = await executeSteps(config, states, steps, { ...options, runId, reason: "migration:revert" });
    for (const step of deploy.steps) resultOf(step.db).reverted.push(step);
    Object.assign(report, { status: deploy.failure ? "failed" : "reverted", ...outcomeOf(deploy) });
  });
  return report;
}
