// Maintenance mode: admindb.system_settings 'maintenance_mode', set to enabled while a run changes
// the databases and put back afterwards. The value we write carries the previous one, so a run that
// died before putting it back (SIGKILL) is repaired by the next run.
import type { Queryable } from "../postgres/sql";
import { rows, tableExists } from "../postgres/sql";

export const MAINTENANCE_MESSAGE = "Database migration in progress";

interface OurValue {
  enabled: true;
  message: string;
  migration_run: string;
  /** Set when the run could not undo itself: the value stays on until a person turns it off. */
  undo_failed?: true;
  /** With undo_failed: the databases the run could not reach to undo. */
  unreachable?: string[];
  /** The setting as it was, exactly (text of the json value, and its updated_at). */
  previous: { value: string; updated_at: string };
}

export interface SavedSetting {
  value: string;
  updated_at: string;
}

/** Whether a saved setting had maintenance on (an operator's window, with their message). */
export function wasOn(saved: SavedSetting): boolean {
  try {
    return (JSON.parse(saved.value) as { enabled?: unknown })?.enabled === true;
  } catch {
    return false;
  }
}

function isOurs(value: unknown): value is OurValue {
  return typeof value === "object" && value !== null && "migration_run" in value && "previous" in value;
}

/** A value left on by a run that could not undo itself, as a later run found it. */
export interface UndoFailedMark {
  run: string;
  unreachable: string[];
  /** The mark itself, to put back when the later run does not finish the job. */
  row: SavedSetting;
}

/**
 * Turns maintenance on; returns the setting as it was before any run of ours changed it (to put
 * back exactly), and the undo_failed mark it found, if any. Undefined when there is no setting (a
 * database not migrated yet).
 */
export async function enableMaintenance(q: Queryable, runId: string): Promise<{ previous: SavedSetting; marked?: UndoFailedMark } | undefined> {
  if (!(await tableExists(q, "system_settings"))) return undefined;
  const [row] = await rows<SavedSetting>(q, `SELECT value::text AS value, updated_at::text AS updated_at FROM system_settings WHERE key = 'maintenance_mode'`);
  if (!row) return undefined;
  const current: unknown = JSON.parse(row.value);
  // Left on by a run that died, or that could not undo itself: what that run replaced is what we
  // put back, but the mark only when this run finishes the job (the caller decides).
  const previous = isOurs(current) ? current.previous : row;
  const marked = isOurs(current) && current.undo_failed ? { run: current.migration_run, unreachable: current.unreachable ?? [], row } : undefined;
  const value: OurValue = { enabled: true, message: MAINTENANCE_MESSAGE, migration_run: runId, previous };
  await q.query(`UPDATE system_settings SET value = $1::json, updated_at = now() WHERE key = 'maintenance_mode'`, [JSON.stringify(value)]);
  return { previous, ...(marked ? { marked } : {}) };
}

/** The undo_failed mark on maintenance_mode, if a run left one. */
export async function readUndoFailed(q: Queryable): Promise<UndoFailedMark | undefined> {
  if (!(await tableExists(q, "system_settings"))) return undefined;
  const [row] = await rows<SavedSetting>(q, `SELECT value::text AS value, updated_at::text AS updated_at FROM system_settings WHERE key = 'maintenance_mode'`);
  const current: unknown = row ? JSON.parse(row.value) : undefined;
  return isOurs(current) && current.undo_failed ? { run: current.migration_run, unreachable: current.unreachable ?? [], row: row! } : undefined;
}

/** Whether a run still has a connection on this server (its id is in application_name). */
export async function runAlive(q: Queryable, runId: string): Promise<boolean> {
  const [alive] = await rows<{ alive: boolean }>(
    q, `SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE application_name = 'ai-micro-migrations run ' || $1 OR application_name LIKE 'ai-micro-migrations run ' || $1 || ' %') AS alive`, [runId],
  );
  return alive.alive;
}

/**
 * Puts back the value a run left behind when it died before it could (SIGKILL, lost host): ours,
 * and no connection of that run is left on the server. Returns the dead run's id when it repaired.
 */
export async function repairStaleMaintenance(q: Queryable): Promise<string | undefined> {
  if (!(await tableExists(q, "system_settings"))) return undefined;
  const [row] = await rows<{ value: string }>(q, `SELECT value::text AS value FROM system_settings WHERE key = 'maintenance_mode'`);
  const current: unknown = row ? JSON.parse(row.value) : undefined;
  if (!isOurs(current) || current.undo_failed) return undefined;
  if (await runAlive(q, current.migration_run)) return undefined;
  await restoreMaintenance(q, current.previous, current.migration_run);
  return current.migration_run;
}

/**
 * Puts back the value the run replaced, if the value is still the run's own: one that somebody
 * set during the run (the admin service, db:maintenance) is theirs to keep. Returns whether it did.
 */
export async function restoreMaintenance(q: Queryable, previous: SavedSetting, runId?: string): Promise<boolean> {
  if (!(await tableExists(q, "system_settings"))) return false; // reverted away with its table
  const result = await q.query(
    `UPDATE system_settings SET value = $1::json, updated_at = $2::timestamp
      WHERE key = 'maintenance_mode' AND ($3::text IS NULL OR value::jsonb ->> 'migration_run' = $3) RETURNING key`,
    [previous.value, previous.updated_at, runId ?? null],
  );
  return (Array.isArray(result) ? result : ((result as { rows?: unknown[] }).rows ?? [])).length > 0;
}

/** Marks the run's maintenance value as left on because undoing failed: no later run puts it back. */
export async function markUndoFailed(q: Queryable, runId: string, unreachable: string[] = []): Promise<void> {
  await q.query(
    `UPDATE system_settings SET value = (value::jsonb || jsonb_build_object('undo_failed', true, 'unreachable', $2::jsonb))::json
      WHERE key = 'maintenance_mode' AND value::jsonb ->> 'migration_run' = $1`,
    [runId, JSON.stringify(unreachable)],
  );
}

/** Puts an undo_failed mark back exactly as it was found (a later run did not finish the job). */
export async function putBackMark(q: Queryable, mark: UndoFailedMark, runId: string): Promise<void> {
  await restoreMaintenance(q, mark.row, runId);
}

/** The maintenance window as the services read it: `{"enabled": ..., "message": ...}`. */
export interface MaintenanceState {
  enabled: boolean;
  message: string;
  /** Set while a deploy run holds it on. */
  run?: string;
  /** The run could not undo itself: these databases were unreachable. */
  undoFailed?: { unreachable: string[] };
  /** Whether the run named in `run` still has a connection on admindb's server. */
  runAlive?: boolean;
  updatedAt: string;
}

/** The current maintenance_mode; undefined when admindb has no such setting (not migrated yet). */
export async function readMaintenance(q: Queryable): Promise<MaintenanceState | undefined> {
  if (!(await tableExists(q, "system_settings"))) return undefined;
  const [row] = await rows<SavedSetting>(q, `SELECT value::text AS value, updated_at::text AS updated_at FROM system_settings WHERE key = 'maintenance_mode'`);
  if (!row) return undefined;
  const value = JSON.parse(row.value) as { enabled?: unknown; message?: unknown };
  return {
    enabled: value?.enabled === true,
    message: typeof value?.message === "string" ? value.message : "",
    ...(isOurs(value) ? { run: value.migration_run, ...(value.undo_failed ? { undoFailed: { unreachable: value.unreachable ?? [] } } : {}) } : {}),
    updatedAt: row.updated_at,
  };
}

/** Sets maintenance_mode by hand (or to keep it on after a deploy), in the shape the services read. */
export async function setMaintenance(q: Queryable, state: { enabled: boolean; message: string }): Promise<void> {
  await q.query(
    `INSERT INTO system_settings (key, value) VALUES ('maintenance_mode', $1::json)
     ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated_at = now()`,
    [JSON.stringify({ enabled: state.enabled, message: state.message })],
  );
}

/** Records the run and each database's latest migration in 'schema_version'. */
export async function recordSchemaVersion(q: Queryable, runId: string, latest: Record<string, string | null>): Promise<boolean> {
  if (!(await tableExists(q, "system_settings"))) return false;
  // Databases this run did not look at keep what the previous run recorded for them.
  const [row] = await rows<{ value: { migrations?: Record<string, string | null> } | null }>(q, `SELECT value FROM system_settings WHERE key = 'schema_version'`);
  const migrations = { ...(row?.value?.migrations ?? {}), ...latest };
  const value = { version: runId, updated_at: new Date().toISOString(), run_id: runId, migrations };
  await q.query(
    `INSERT INTO system_settings (key, value) VALUES ('schema_version', $1::json)
     ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated_at = now()`,
    [JSON.stringify(value)],
  );
  return true;
}
