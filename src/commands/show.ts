// migration:show: per database, what is applied, what is pending, and the last deploy run.
import type { Config } from "../config";
import type { DbName } from "../databases";
import { readHistory } from "../history";
import { closeStates, readStates } from "../plan";

export interface DbShow {
  db: DbName;
  database: string;
  exists: boolean;
  applied: Array<{ name: string; checksum: "ok" | "changed" | "unverified" | "file-missing" }>;
  /** True when any applied migration's file is missing or edited (migration:run would refuse). */
  historyDrift: boolean;
  pending: string[];
  lastRun?: { runId: string; direction: string; at: string; by: string };
}

export interface ShowReport {
  command: "show";
  databases: DbShow[];
}

export async function showMigrations(config: Config, dbs: DbName[]): Promise<ShowReport> {
  const states = await readStates(config, dbs);
  try {
    const databases = await Promise.all(states.map(async (s): Promise<DbShow> => {
      const history = s.exists ? await readHistory(s.dataSource) : [];
      const last = history[history.length - 1];
      const changed = new Set(s.changedFiles.map((f) => f.name));
      const missing = new Set(s.missingFiles);
      const unverified = new Set(s.unverified);
      const state = (name: string) => (missing.has(name) ? "file-missing" : changed.has(name) ? "changed" : unverified.has(name) ? "unverified" : "ok") as DbShow["applied"][number]["checksum"];
      return {
        db: s.db,
        database: s.target.database,
        exists: s.exists,
        applied: s.applied.map((a) => ({ name: a.name, checksum: state(a.name) })),
        historyDrift: changed.size + missing.size > 0,
        pending: s.pending.map((p) => p.name),
        lastRun: last && { runId: last.runId, direction: last.direction, at: last.appliedAt.toISOString(), by: last.appliedBy },
      };
    }));
    return { command: "show", databases };
  } finally {
    await closeStates(states);
  }
}
