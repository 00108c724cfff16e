// migration:show across environments (--env dev --env staging --env production, or --all-envs):
// one table of every migration, in timeline order across the three databases, against every
// environment: applied (when), pending, edited since it was applied, or applied but its file is
// missing here. An environment that cannot be read says why in its header line and `unreachable`
// in its cells; the CLI fails on it unless told to tolerate it.
import type { Config } from "../config";
import { DATABASES, DbName } from "../databases";
import { closeStates, DbState, readStates } from "../deploy/plan";
import { MigrationError } from "../errors";

export type CellState = "applied" | "pending" | "edited" | "missing" | "unreachable";

export interface EnvironmentCell {
  state: CellState;
  /** When it was applied (or baselined) there, ISO time. */
  at?: string;
}

export interface EnvironmentColumn {
  name: string;
  /** `server: ...` line of that environment, passwords hidden. */
  server?: string;
  /** Why it could not be read (then every cell of it is `unreachable`). */
  error?: string;
}

export interface EnvironmentsReport {
  command: "show-environments";
  environments: EnvironmentColumn[];
  /** Every migration any environment or the files know, oldest first; cells by environment name. */
  migrations: Array<{ db: DbName; name: string; timestamp: number; cells: Record<string, EnvironmentCell> }>;
}

/** An environment to read: its configuration, or why there is none. */
export interface EnvironmentInput {
  name: string;
  config?: Config;
  server?: string;
  error?: string;
}

function cellsOf(state: DbState): Map<string, EnvironmentCell> {
  const out = new Map<string, EnvironmentCell>();
  const changed = new Set(state.changedFiles.map((f) => f.name));
  const missing = new Set(state.missingFiles);
  const appliedAt = new Map<string, Date>();
  for (const h of state.history) if (h.direction !== "down" && h.direction !== "repair") appliedAt.set(h.name, h.appliedAt);
  for (const a of state.applied) {
    const at = appliedAt.get(a.name)?.toISOString();
    out.set(a.name, { state: missing.has(a.name) ? "missing" : changed.has(a.name) ? "edited" : "applied", ...(at ? { at } : {}) });
  }
  for (const p of state.pending) out.set(p.name, { state: "pending" });
  return out;
}

/**
 * Reads every environment (in parallel) and lines their migrations up.
 *
 * @example await showEnvironments([{ name: "dev", config: devConfig }, { name: "prod", error: "no .env.prod" }], ["authdb", "apidb", "admindb"])
 */
export async function showEnvironments(inputs: EnvironmentInput[], dbs: DbName[] = [...DATABASES]): Promise<EnvironmentsReport> {
  const columns: EnvironmentColumn[] = [];
  const rows = new Map<string, EnvironmentsReport["migrations"][number]>();
  const read = await Promise.all(inputs.map(async (input) => {
    if (!input.config) return { input, error: input.error ?? "not configured" };
    try {
      const states = await readStates(input.config, dbs);
      await closeStates(states);
      return { input, states };
    } catch (error) {
      const line = error instanceof MigrationError ? error.line : String((error as Error)?.message ?? error);
      return { input, error: line.split("\n")[0] };
    }
  }));
  for (const { input, states, error } of read) {
    columns.push({ name: input.name, ...(input.server ? { server: input.server } : {}), ...(error ? { error } : {}) });
    for (const state of states ?? []) {
      for (const f of state.files) {
        const key = `${state.db}/${f.name}`;
        if (!rows.has(key)) rows.set(key, { db: state.db, name: f.name, timestamp: f.timestamp, cells: {} });
      }
      for (const [name, cell] of cellsOf(state)) {
        const key = `${state.db}/${name}`;
        const row = rows.get(key) ?? { db: state.db, name, timestamp: Number(name.slice(-13)) || 0, cells: {} };
        row.cells[input.name] = cell;
        rows.set(key, row);
      }
    }
  }
  // Rows come from the files and the environments that were read: an unreachable one fills its cell in each.
  for (const { input, error } of read) if (error) for (const row of rows.values()) row.cells[input.name] = { state: "unreachable" };
  const migrations = [...rows.values()].sort((a, b) => a.timestamp - b.timestamp || DATABASES.indexOf(a.db) - DATABASES.indexOf(b.db));
  return { command: "show-environments", environments: columns, migrations };
}
