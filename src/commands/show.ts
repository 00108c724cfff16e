// migration:show: per database, what is applied, what is pending, and the last deploy run.
import type { Config } from "../config";
import type { DbName } from "../databases";
import { closeStates, DbState, readStates } from "../deploy/plan";
import { baseName } from "../runner/migration-files";
import { schemaDiff } from "../schema/diff";

export interface DbShow {
  db: DbName;
  database: string;
  exists: boolean;
  applied: Array<{ name: string; checksum: "ok" | "changed" | "unverified" | "file-missing" }>;
  /** True when any applied migration's file is missing or edited (migration:run would refuse). */
  historyDrift: boolean;
  /**
   * Statements TypeORM would generate to match the entities (0: in sync); null while migrations are
   * pending (they are the difference). Schema drift needs a shadow database: migration:check.
   */
  entityDrift: number | null;
  pending: string[];
  /** Pending contract migrations whose expand is applied: "expanded, contract pending" (migration:complete applies them). */
  contractPending?: string[];
  lastRun?: { runId: string; direction: string; at: string; by: string };
}

export interface ShowReport {
  command: "show";
  databases: DbShow[];
}

/** Contract migrations waiting for migration:complete while their expand is applied. */
function contractPendingOf(s: DbState): Pick<DbShow, "contractPending"> {
  const applied = new Set(s.applied.map((a) => a.name));
  const waiting = s.pending.filter((p) => p.phase === "contract" && s.files.some((f) => f.phase === "expand" && baseName(f) === baseName(p) && applied.has(f.name)));
  return waiting.length ? { contractPending: waiting.map((p) => p.name) } : {};
}

export async function showMigrations(config: Config, dbs: DbName[]): Promise<ShowReport> {
  const states = await readStates(config, dbs);
  try {
    const databases = await Promise.all(states.map(async (s): Promise<DbShow> => {
      const history = s.history;
      const diff = s.exists && !s.pending.length ? await schemaDiff(s.dataSource) : undefined;
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
        entityDrift: diff ? diff.up.length : null,
        pending: s.pending.map((p) => p.name),
        ...contractPendingOf(s),
        lastRun: last && { runId: last.runId, direction: last.direction, at: last.appliedAt.toISOString(), by: last.appliedBy },
      };
    }));
    return { command: "show", databases };
  } finally {
    await closeStates(states);
  }
}
