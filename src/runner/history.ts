// The bookkeeping tables: TypeORM's `migrations` (what is applied; the plain CLI reads it too) and
// our `migrations_history` (every up and down: who, when, which run, how long, which checksum).
import * as os from "os";
import { escapeLiteral } from "pg";
import { Queryable, rows, tableExists } from "../postgres/sql";

/** Who runs this: OS user and host; the database role is added by the server. */
const WHO = (() => {
  try {
    return `${os.userInfo().username}@${os.hostname()}`;
  } catch {
    return `uid ${process.getuid?.() ?? "?"}@${os.hostname()}`;
  }
})();

export interface AppliedMigration {
  id: number;
  timestamp: number;
  name: string;
}

export interface HistoryEntry {
  name: string;
  checksum: string | null;
  runId: string;
  direction: "up" | "down" | "baseline" | "repair" | "squash";
  /** The command of the run: migration:run, migration:revert, migration:baseline, migration:repair, migration:squash. */
  command: string | null;
  appliedAt: Date;
  appliedBy: string;
  durationMs: number;
}


export async function ensureBookkeeping(q: Queryable): Promise<void> {
  // Same shape as the table TypeORM's own CLI creates, so both tools read and write one history.
  await q.query(`CREATE TABLE IF NOT EXISTS "migrations" (
    "id" SERIAL NOT NULL, "timestamp" bigint NOT NULL, "name" character varying NOT NULL,
    CONSTRAINT "PK_8c82d7f526340ab734260ea46be" PRIMARY KEY ("id"))`);
  await q.query(`CREATE TABLE IF NOT EXISTS "migrations_history" (
    "id" SERIAL PRIMARY KEY,
    "name" character varying NOT NULL,
    "checksum" character varying,
    "run_id" character varying NOT NULL,
    "direction" character varying NOT NULL,
    "applied_at" timestamptz NOT NULL DEFAULT now(),
    "applied_by" character varying NOT NULL DEFAULT current_user,
    "duration_ms" integer NOT NULL DEFAULT 0,
    "command" character varying)`);
}

export async function readApplied(q: Queryable): Promise<AppliedMigration[]> {
  if (!(await tableExists(q, "migrations"))) return [];
  const applied = await rows<{ id: number; timestamp: string; name: string }>(q, `SELECT "id", "timestamp", "name" FROM "migrations" ORDER BY "id"`);
  return applied.map((r) => ({ id: r.id, timestamp: Number(r.timestamp), name: r.name }));
}

export async function readHistory(q: Queryable): Promise<HistoryEntry[]> {
  if (!(await tableExists(q, "migrations_history"))) return [];
  const entries = await rows<Record<string, unknown>>(
    q, `SELECT "name", "checksum", "run_id", "direction", "command", "applied_at", "applied_by", "duration_ms" FROM "migrations_history" ORDER BY "id"`,
  );
  return entries.map((r) => ({
    name: String(r.name), checksum: (r.checksum as string | null) ?? null, runId: String(r.run_id),
    direction: r.direction as HistoryEntry["direction"], command: (r.command as string | null) ?? null, appliedAt: r.applied_at as Date,
    appliedBy: String(r.applied_by), durationMs: Number(r.duration_ms),
  }));
}

/** The checksum each migration was last applied, baselined or repaired with. */
export function recordedChecksums(history: HistoryEntry[]): Map<string, string> {
  const out = new Map<string, string>();
  for (const h of history) if (h.direction !== "down" && h.checksum) out.set(h.name, h.checksum);
  return out;
}

export async function recordApplied(q: Queryable, m: { timestamp: number; name: string }): Promise<void> {
  await q.query(`INSERT INTO "migrations" ("timestamp", "name") VALUES ($1, $2)`, [m.timestamp, m.name]);
}

export async function recordReverted(q: Queryable, name: string): Promise<void> {
  await q.query(`DELETE FROM "migrations" WHERE "name" = $1`, [name]);
}

type HistoryRecord = { name: string; checksum: string | null; runId: string; direction: HistoryEntry["direction"]; command: string; durationMs: number };

const INSERT_HISTORY = `INSERT INTO "migrations_history" ("name", "checksum", "run_id", "direction", "command", "duration_ms", "applied_by")
     VALUES ($1, $2, $3, $4, $5, $6, $7 || ' as ' || current_user)`;

const historyParameters = (e: HistoryRecord) => [e.name, e.checksum, e.runId, e.direction, e.command, Math.round(e.durationMs), WHO];

export async function recordHistory(q: Queryable, e: HistoryRecord): Promise<void> {
  await q.query(INSERT_HISTORY, historyParameters(e));
}

/**
 * The statement recording a migration applied (up: added to `migrations`) or reverted (down:
 * removed from it), with its `migrations_history` row: one statement, values as literals, so the
 * migrator sends it in the same round trip as its COMMIT.
 *
 * @example await qr.query(`${recordStepSql(file, { ...entry, direction: "up" })}; COMMIT`)
 */
export function recordStepSql(m: { timestamp: number; name: string }, e: HistoryRecord & { direction: "up" | "down" }): string {
  const [name, checksum, runId, direction, command, durationMs, who] = historyParameters(e).map((v) => (v === null ? "NULL" : typeof v === "number" ? String(v) : escapeLiteral(String(v))));
  const change = e.direction === "up"
    ? `INSERT INTO "migrations" ("timestamp", "name") VALUES (${Math.trunc(m.timestamp)}, ${name})`
    : `DELETE FROM "migrations" WHERE "name" = ${name}`;
  return `WITH "step" AS (${change}) INSERT INTO "migrations_history" ("name", "checksum", "run_id", "direction", "command", "duration_ms", "applied_by")
     VALUES (${name}, ${checksum}, ${runId}, ${direction}, ${command}, ${durationMs}, ${who} || ' as ' || current_user)`;
}
