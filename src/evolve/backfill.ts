// A batched, resumable, throttled backfill (GitLab's batched background migrations, pgroll's
// backfill package): walks the table's primary key `WHERE key > last ORDER BY key LIMIT n`, each
// batch one short transaction of its own (the run's lock_timeout, retried), so no lock is held
// from one batch to the next and the services' writes wait at most for one batch. The cursor is
// saved in `migrations_backfill` in the same transaction as its batch: a run killed at any moment
// resumes after the last batch that committed, and no batch is done twice.
import * as crypto from "crypto";
import type { QueryRunner } from "typeorm";
import { evolveSettings } from "../config";
import { durationMs, sleep } from "../runner/lock-retries";
import { BackfillEvent, runtimeOf } from "../runner/migration-runtime";
import { quoteIdent, rows } from "../postgres/sql";
import { inShortTransaction, requireOwnTransactions } from "./short-transaction";
import { ReplicaLagWatch, throttleReason } from "./throttle";

export interface BackfillOptions {
  /** The table, e.g. "profiles" (schema public). */
  table: string;
  /** The SET list, e.g. `phone_number = phone`. */
  set: string;
  /** Only rows that need it, e.g. `phone_number IS DISTINCT FROM phone` (makes a rerun cheap). */
  where?: string;
  /** Rows per batch (default MIGRATION_BACKFILL_BATCH, 1000). */
  batchSize?: number;
  /** Names the saved cursor; default: the migration, table and SET/WHERE text. */
  name?: string;
  /** Settings for each batch's transaction only (SET LOCAL), e.g. `{ "migrations.evolve_backfill": "on" }`. */
  setLocal?: Record<string, string>;
  /** Told of progress and pauses (default: the runner's channel, which the CLI prints). */
  onProgress?: (event: BackfillEvent) => void;
}

export interface BackfillResult {
  table: string;
  rowsScanned: number;
  rowsUpdated: number;
  batches: number;
  seconds: number;
  rowsPerSecond: number;
  /** The key it resumed after, when an earlier run had stopped part way. */
  resumedAfter?: string;
  /** Total time spent waiting for a replica or a wraparound vacuum. */
  throttledSeconds: number;
}

export const CURSOR_TABLE = "migrations_backfill";

async function ensureCursorTable(qr: QueryRunner): Promise<void> {
  const sql = `CREATE TABLE IF NOT EXISTS "${CURSOR_TABLE}" (
    "name" text PRIMARY KEY, "table_name" text NOT NULL, "last_key" jsonb,
    "rows_scanned" bigint NOT NULL DEFAULT 0, "rows_updated" bigint NOT NULL DEFAULT 0, "batches" integer NOT NULL DEFAULT 0,
    "started_at" timestamptz NOT NULL DEFAULT now(), "updated_at" timestamptz NOT NULL DEFAULT now(), "finished_at" timestamptz)`;
  try {
    await qr.query(sql);
  } catch (error) {
    // Two first backfills at once: one creates the table, the other's CREATE trips over its type.
    if ((error as { code?: string }).code !== "23505") throw error;
    await qr.query(sql);
  }
}

/** The primary key's columns, in key order. */
async function keyColumns(qr: QueryRunner, table: string): Promise<string[]> {
  const found = await rows<{ name: string }>(qr, `
    SELECT a.attname AS name FROM pg_index i
      JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
     WHERE i.indrelid = to_regclass($1) AND i.indisprimary
     ORDER BY array_position(i.indkey::int2[], a.attnum)`, [`public.${quoteIdent(table)}`]);
  if (!found.length) throw new Error(`backfill: table ${table} has no primary key to walk (or does not exist)`);
  return found.map((r) => r.name);
}

/** The statement of one batch: $1.. are the last key's values (none for the first batch). */
export function batchStatement(table: string, key: string[], options: { set: string; where?: string; batchSize: number; first: boolean }): string {
  const t = quoteIdent(table);
  const cols = key.map(quoteIdent).join(", ");
  const alias = key.map((_, i) => `evolve_key_${i + 1}`);
  const after = options.first ? "" : ` WHERE (${cols}) > (${key.map((_, i) => `$${i + 1}`).join(", ")})`;
  return `WITH batch AS MATERIALIZED (
  SELECT ${key.map((k, i) => `${quoteIdent(k)} AS ${alias[i]}`).join(", ")} FROM ${t}${after} ORDER BY ${cols} LIMIT ${options.batchSize}
), changed AS (
  UPDATE ${t} SET ${options.set} FROM batch
   WHERE (${key.map((k) => `${t}.${quoteIdent(k)}`).join(", ")}) = (${alias.map((a) => `batch.${a}`).join(", ")})${options.where ? ` AND (${options.where})` : ""}
  RETURNING 1
)
SELECT (SELECT count(*) FROM batch)::int AS scanned, (SELECT count(*) FROM changed)::int AS updated,
       (SELECT json_build_array(${alias.map((a) => `${a}::text`).join(", ")}) FROM batch ORDER BY ${alias.map((a) => `${a} DESC`).join(", ")} LIMIT 1) AS last`;
}

/**
 * Fills a column (or anything an UPDATE can do) in batches walking the primary key; returns when
 * the whole table was walked. The migration must declare `transaction = false`.
 *
 * @example
 *   await backfill(queryRunner, { table: "profiles", set: "phone_number = phone", where: "phone_number IS DISTINCT FROM phone" });
 */
export async function backfill(qr: QueryRunner, options: BackfillOptions): Promise<BackfillResult> {
  requireOwnTransactions(qr, "backfill");
  const runtime = runtimeOf(qr);
  const settings = runtime?.settings ?? evolveSettings(process.env);
  const batchSize = options.batchSize ?? settings.batchSize;
  const report = options.onProgress ?? runtime?.onEvent ?? (() => undefined);
  const empty: BackfillResult = { table: options.table, rowsScanned: 0, rowsUpdated: 0, batches: 0, seconds: 0, rowsPerSecond: 0, throttledSeconds: 0 };

  // Recorded, not run (--dry-run, lint): a real server always answers; show the batch statement.
  if (!(await rows(qr, `SELECT 1 AS one`)).length) {
    await qr.query(batchStatement(options.table, ["id"], { set: options.set, where: options.where, batchSize, first: false }));
    return empty;
  }
  await ensureCursorTable(qr);
  const key = await keyColumns(qr, options.table);
  const name = options.name ?? `${runtime?.migration ? runtime.migration + ":" : ""}${options.table}:${crypto.createHash("sha256").update(`${options.set}\n${options.where ?? ""}`).digest("hex").slice(0, 12)}`;

  const [saved] = await rows<{ last_key: string[] | null; rows_scanned: string; rows_updated: string; batches: number; finished: boolean }>(
    qr, `SELECT last_key, rows_scanned, rows_updated, batches, finished_at IS NOT NULL AS finished FROM "${CURSOR_TABLE}" WHERE name = $1`, [name]);
  let last: string[] | null = saved && !saved.finished ? saved.last_key : null;
  if (!saved || saved.finished) {
    await qr.query(`INSERT INTO "${CURSOR_TABLE}" (name, table_name) VALUES ($1, $2)
                    ON CONFLICT (name) DO UPDATE SET last_key = NULL, rows_scanned = 0, rows_updated = 0, batches = 0, started_at = now(), updated_at = now(), finished_at = NULL`, [name, options.table]);
  }
  const before = { scanned: last ? Number(saved!.rows_scanned) : 0, updated: last ? Number(saved!.rows_updated) : 0 };
  const resumedAfter = last ? last.join(",") : undefined;
  const [{ estimate }] = await rows<{ estimate: number }>(qr, `SELECT greatest(reltuples, 0)::float8 AS estimate FROM pg_class WHERE oid = to_regclass($1)`, [`public.${quoteIdent(options.table)}`]);
  const total = estimate > 0 ? Math.round(estimate) : Number((await rows<{ n: string }>(qr, `SELECT count(*) AS n FROM ${quoteIdent(options.table)}`))[0].n);

  const watch = new ReplicaLagWatch();
  const maxLag = durationMs(settings.maxReplicaLag) / 1000;
  const started = Date.now();
  let throttledMs = 0;
  let scanned = 0;
  let updated = 0;
  let batches = 0;
  let lastCheck = 0;
  let lastReport = 0;
  const event = (state: BackfillEvent["state"], reason?: string): BackfillEvent => {
    const seconds = Math.max((Date.now() - started - throttledMs) / 1000, 0.001);
    const rate = scanned / seconds;
    const left = Math.max(total - before.scanned - scanned, 0);
    return {
      kind: "backfill", migration: runtime?.migration, table: options.table, state, rowsScanned: before.scanned + scanned, rowsUpdated: before.updated + updated,
      rowsTotal: total, rowsPerSecond: Math.round(rate), ...(scanned && state !== "done" ? { etaSeconds: Math.round(left / rate) } : {}),
      ...(resumedAfter ? { resumedAfter } : {}), ...(reason ? { reason } : {}),
    };
  };
  report(event("started"));

  for (;;) {
    if (runtime?.signal?.aborted) throw new Error(`backfill of ${options.table} interrupted (it resumes from its saved cursor)`);
    // Health, checked at most twice a second: wait while a replica lags or wraparound vacuum runs.
    if (Date.now() - lastCheck >= 500) {
      let reason = await throttleReason(qr, watch, options.table, maxLag);
      if (reason) {
        const pausedAt = Date.now();
        report(event("throttled", reason));
        while (reason) {
          await sleep(1000, runtime?.signal);
          if (runtime?.signal?.aborted) throw new Error(`backfill of ${options.table} interrupted (it resumes from its saved cursor)`);
          reason = await throttleReason(qr, watch, options.table, maxLag);
        }
        throttledMs += Date.now() - pausedAt;
        report(event("resumed"));
      }
      lastCheck = Date.now();
    }
    const statement = batchStatement(options.table, key, { set: options.set, where: options.where, batchSize, first: !last });
    const batch = await inShortTransaction(qr, async (q) => {
      for (const [setting, value] of Object.entries(options.setLocal ?? {})) await q.query(`SELECT set_config($1, $2, true)`, [setting, value]);
      const [r] = await rows<{ scanned: number; updated: number; last: string[] | null }>(q, statement, last ?? []);
      if (r.scanned) {
        await q.query(`UPDATE "${CURSOR_TABLE}" SET last_key = $2, rows_scanned = rows_scanned + $3, rows_updated = rows_updated + $4, batches = batches + 1, updated_at = now() WHERE name = $1`,
          [name, JSON.stringify(r.last), r.scanned, r.updated]);
      }
      return r;
    });
    if (batch.scanned) {
      scanned += batch.scanned;
      updated += batch.updated;
      batches++;
      last = batch.last;
    }
    if (batch.scanned < batchSize) break;
    if (Date.now() - lastReport >= 1000) {
      lastReport = Date.now();
      report(event("progress"));
    }
  }
  await qr.query(`UPDATE "${CURSOR_TABLE}" SET finished_at = now(), updated_at = now() WHERE name = $1`, [name]);
  const done = event("done");
  report(done);
  const seconds = (Date.now() - started) / 1000;
  return {
    table: options.table, rowsScanned: done.rowsScanned, rowsUpdated: done.rowsUpdated, batches, seconds,
    rowsPerSecond: done.rowsPerSecond, ...(resumedAfter ? { resumedAfter } : {}), throttledSeconds: throttledMs / 1000,
  };
}
