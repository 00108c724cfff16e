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

/**
 * Turns maintenance on; returns the setting as it was, to put back exactly, or undefined when there
 * is no setting (a database not migrated yet).
 */
export async function enableMaintenance(q: Queryable, runId: string): Promise<SavedSetting | undefined> {
  if (!(await tableExists(q, "system_settings"))) return undefined;
  const [row] = await rows<SavedSetting>(q, `SELECT value::text AS value, updated_at::text AS updated_at FROM system_settings WHERE key = 'maintenance_mode'`);
  if (!row) return undefined;
  const current: unknown = JSON.parse(row.value);
  // Left on by a run that died: what that run replaced is what we put back. Left on because a run
  // could not undo itself: that stays, and is what we put back.
  const previous = isOurs(current) && !current.undo_failed ? current.previous : row;
  const value: OurValue = { enabled: true, message: MAINTENANCE_MESSAGE, migration_run: runId, previous };
  await q.query(`UPDATE system_settings SET value = $1::json, updated_at = now() WHERE key = 'maintenance_mode'`, [JSON.stringify(value)]);
  return previous;
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
  const [alive] = await rows<{ alive: boolean }>(
    q, `SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE application_name = 'ai-micro-migrations run ' || $1) AS alive`, [current.migration_run],
  );
  if (alive.alive) return undefined;
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
export async function markUndoFailed(q: Queryable, runId: string): Promise<void> {
  await q.query(
    `UPDATE system_settings SET value = (value::jsonb || '{"undo_failed": true}')::json
      WHERE key = 'maintenance_mode' AND value::jsonb ->> 'migration_run' = $1`,
    [runId],
  );
}

/** The maintenance window as the services read it: `{"enabled": ..., "message": ...}`. */
export interface MaintenanceState {
  enabled: boolean;
  message: string;
  /** Set while a deploy run holds it on. */
  run?: string;
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
    ...(isOurs(value) ? { run: value.migration_run } : {}),
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
