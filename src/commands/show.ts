// migration:show: per database, what is applied, what is pending, and the last deploy run.
import type { Config } from "../config";
import type { DbName } from "../databases";
import { readHistory } from "../history";
import { closeStates, readStates } from "../plan";

export interface DbShow {
  db: DbName;
  database: string;
  exists: boolean;
  applied: Array<{ name: string; file: boolean }>;
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
      const names = new Set(s.files.map((f) => f.name));
      return {
        db: s.db,
        database: s.target.database,
        exists: s.exists,
        applied: s.applied.map((a) => ({ name: a.name, file: names.has(a.name) })),
        pending: s.pending.map((p) => p.name),
        lastRun: last && { runId: last.runId, direction: last.direction, at: last.appliedAt.toISOString(), by: last.appliedBy },
      };
    }));
    return { command: "show", databases };
  } finally {
    await closeStates(states);
  }
}
