// A hard stop (second Ctrl-C) exits at once; what it leaves is known from what the run kept
// current while it worked: the migrations it applied and did not undo, and maintenance mode.
import { DATABASES, DbName } from "../databases";

/** What a run has changed so far and not undone, kept current by the deploy (deploy/steps.ts). */
export interface LiveRun {
  runId: string;
  applied: Array<{ db: DbName; name: string; direction: "up" | "down" }>;
  maintenanceOn: boolean;
}

export interface HardStopReport {
  command: "run" | "complete" | "revert";
  runId: string;
  status: "stopped";
  /** Per database: what this run changed and did not undo. */
  databases: Array<{ db: DbName; left: Array<{ name: string; direction: "up" | "down" }> }>;
  /** Whether this run left maintenance_mode on. */
  maintenanceOn: boolean;
  /** The command that finishes the job, and the one that undoes it instead. */
  finish: string;
  undo?: string;
}

export function hardStopReport(live: LiveRun, command: "run" | "complete" | "revert"): HardStopReport {
  const databases = DATABASES.map((db) => ({ db, left: live.applied.filter((a) => a.db === db).map(({ name, direction }) => ({ name, direction })) }));
  return {
    command, runId: live.runId, status: "stopped", databases, maintenanceOn: live.maintenanceOn,
    // A run: the next one goes forward (and puts back maintenance left on by a run that is gone).
    // A revert: what is left to revert depends on how it was asked; show says where each database is.
    finish: command === "run" ? "npm run migration:run" : command === "complete" ? "npm run migration:complete" : "npm run migration:show, then migration:revert for what is left (or npm run migration:run to go forward again)",
    ...(command !== "revert" && live.applied.length ? { undo: "npm run migration:revert" } : {}),
  };
}
