// A rehearsal of one database's pending migrations on a scratch copy of it: copy, the pending
// migrations up exactly as migration:run applies them (applyMigration: same order, transactions,
// timeouts and lock retries), their downs newest first, the ups again; each observed (time, the
// lock each statement took, rewrites, rows), and the schema compared after up and after up again.
// The real database is only read (pg_dump); the scratch database is dropped (or, given, emptied)
// on every path. Returns what happened as data, failures included.
import type { DataSource } from "typeorm";
import type { BackupEntry, Progress } from "../backup/backup";
import type { DbTarget } from "../config";
import type { DbName } from "../databases";
import { connectServer, describeError, openDataSource } from "../postgres/connect";
import { ensureBookkeeping, readApplied } from "../runner/history";
import type { MigrationFile } from "../runner/migration-files";
import { applyMigration, Timeouts } from "../runner/migrator";
import { Catalog, diffCatalogs, readCatalog } from "../schema/catalog";
import { copyIntoScratch, CopyRate, CopySource, estimateCopyMs, measuredRate, sizeText } from "./copy";
import { Observation, StatementReport, watchMigration } from "./probe";
import { createScratch, Scratch, takeGivenScratch } from "./scratch";

export type RehearsalPhase = "up" | "down" | "up-again";

export interface MigrationRehearsal {
  name: string;
  phase: RehearsalPhase;
  /** The migration's own time, as migration:run would spend it (the probe's queries not counted). */
  durationMs: number;
  /** False for a migration with `transaction = false`: its locks are read from its statements' kinds. */
  transaction: boolean;
  /** Tries rolled back because a lock was taken (on a scratch copy: autovacuum, mostly). */
  lockRetries?: number;
  statements: StatementReport[];
  /** Tables whose files were rewritten (relfilenode changed): a full copy of the table under its lock. */
  rewritten: string[];
  /** Row counts of the tables it wrote to or altered (null: not counted, or the table is gone). */
  rows: Observation["rows"];
  /** The server's error, when it failed. */
  error?: string;
}

export interface RehearsalFailure {
  db: DbName;
  migration?: string;
  phase?: RehearsalPhase;
  message: string;
  /** The statement that failed, on one line. */
  statement?: string;
}

export interface DbRehearsal {
  db: DbName;
  /** The real database's name. */
  database: string;
  /** The scratch database it was copied into: dropped after, or emptied when given (--scratch-url). */
  scratch: string;
  scratchGiven: boolean;
  /** `pg_dump`, `backup <run id>`, or `empty` (the database does not exist yet). */
  source: string;
  /** pg_database_size of the real database (of the backup archive when the database does not exist). */
  sizeBytes: number;
  /** What the copy was expected to take, and on what rate. */
  estimateMs: number;
  estimateBasis: string;
  copyMs: number;
  pending: string[];
  migrations: MigrationRehearsal[];
  /** Down then up again ends at the schema the first up built (null: not reached). */
  sameSchemaAfterDownUp: boolean | null;
  differences: string[];
  /** The downs bring the schema back to the copy's (null: not reached). */
  downRestoresSchema: boolean | null;
  downDifferences: string[];
  failure?: RehearsalFailure;
  /** Cleanup trouble (a scratch database that could not be dropped). */
  warnings: string[];
}

export interface RehearsalContext {
  runId: string;
  timeouts: Timeouts;
  connectTimeoutMs: number;
  jobs: number;
  /** The copy rate estimates use; updated by each copy large enough to measure it. */
  rate: CopyRate;
  /** An empty scratch database to use instead of creating one (--scratch-url). */
  scratchUrl?: string;
  progress?: Progress;
  signal?: AbortSignal;
}

export interface RehearsalInput {
  db: DbName;
  target: DbTarget;
  /** False when the real database does not exist yet: the migrations run on an empty one. */
  exists: boolean;
  /** The migrations to rehearse, in the order migration:run applies them. */
  pending: MigrationFile[];
  /** Copy a backup's archive instead of the live database; `applied` is its migration state. */
  backup?: { runId: string; file: string; entry: BackupEntry };
}

const elapsed = (started: number) => Date.now() - started;

async function sizeOf(target: DbTarget, connectTimeoutMs: number, runId: string): Promise<number> {
  const admin = await connectServer(target, connectTimeoutMs, runId);
  try {
    const { rows } = await admin.query<{ size: string }>(`SELECT pg_database_size($1)::int8 AS size`, [target.database]);
    return Number(rows[0].size);
  } finally {
    await admin.end().catch(() => undefined);
  }
}

/**
 * Rehearses `input.pending` on a scratch copy of `input.target`. Never throws for what happens
 * on the copy (the result's `failure` says it); throws only when no scratch database can be had.
 *
 *   const result = await rehearseDatabase({ db: "apidb", target, exists: true, pending }, context);
 *   if (result.failure) console.error(result.failure.message);
 */
export async function rehearseDatabase(input: RehearsalInput, context: RehearsalContext): Promise<DbRehearsal> {
  const { db, target } = input;
  const source = input.backup ? `backup ${input.backup.runId}` : input.exists ? "pg_dump" : "empty";
  const scratch: Scratch = context.scratchUrl
    ? await takeGivenScratch(db, context.scratchUrl, context.runId, context.connectTimeoutMs)
    : await createScratch(target, input.exists, context.runId, context.connectTimeoutMs);
  const result: DbRehearsal = {
    db, database: target.database, scratch: scratch.target.database, scratchGiven: scratch.given, source, sizeBytes: 0, estimateMs: 0, estimateBasis: context.rate.basis, copyMs: 0,
    pending: input.pending.map((f) => f.name), migrations: [],
    sameSchemaAfterDownUp: null, differences: [], downRestoresSchema: null, downDifferences: [], warnings: [],
  };
  try {
    await copy(input, scratch, context, result);
    if (!result.failure) await replay(input, scratch, context, result);
  } catch (error) {
    result.failure ??= { db, message: context.signal?.aborted ? "interrupted" : describeError(error, scratch.target).message };
  } finally {
    const warning = await scratch.dispose();
    if (warning) result.warnings.push(warning);
  }
  return result;
}

async function copy(input: RehearsalInput, scratch: Scratch, context: RehearsalContext, result: DbRehearsal): Promise<void> {
  if (!input.exists && !input.backup) return; // nothing to copy: the migrations build it from nothing
  result.sizeBytes = input.exists ? await sizeOf(input.target, context.connectTimeoutMs, context.runId) : input.backup!.entry.size;
  result.estimateMs = estimateCopyMs(result.sizeBytes, context.rate);
  const from: CopySource = input.backup
    ? { kind: "backup", runId: input.backup.runId, file: input.backup.file, entry: input.backup.entry }
    : { kind: "pg_dump", target: input.target };
  const event = { db: input.db, step: "copy", detail: `${sizeText(result.sizeBytes)} (about ${Math.max(1, Math.round(result.estimateMs / 1000))} s)` };
  context.progress?.({ ...event, phase: "start" });
  const started = Date.now();
  try {
    await copyIntoScratch(from, scratch.target, { db: input.db, runId: context.runId, jobs: context.jobs, connectTimeoutMs: context.connectTimeoutMs, signal: context.signal });
  } finally {
    context.progress?.({ ...event, phase: "end" });
  }
  result.copyMs = elapsed(started);
  if (!input.backup) context.rate = measuredRate(context.rate, input.db, result.sizeBytes, result.copyMs);
}

async function replay(input: RehearsalInput, scratch: Scratch, context: RehearsalContext, result: DbRehearsal): Promise<void> {
  const ds = await openDataSource(scratch.target, context.connectTimeoutMs, context.runId);
  try {
    if (input.backup) {
      // The archive must hold the state its manifest says, or we would rehearse something else.
      const applied = (await readApplied(ds)).map((a) => a.name);
      if (applied.join(",") !== input.backup.entry.applied.join(",")) {
        result.failure = { db: input.db, message: `the archive of backup ${input.backup.runId} holds ${applied.length} applied migrations, its manifest says ${input.backup.entry.applied.length}` };
        return;
      }
    }
    await ensureBookkeeping(ds);
    const before = await readCatalog(ds);
    if (!(await phase(ds, input.pending, "up", scratch, context, result))) return;
    const afterUp = await readCatalog(ds);
    if (!(await phase(ds, [...input.pending].reverse(), "down", scratch, context, result))) return;
    const afterDown: Catalog = await readCatalog(ds);
    result.downDifferences = diffCatalogs(afterDown, before, { columnOrder: false });
    result.downRestoresSchema = result.downDifferences.length === 0;
    if (!(await phase(ds, input.pending, "up-again", scratch, context, result))) return;
    result.differences = diffCatalogs(await readCatalog(ds), afterUp, { columnOrder: false });
    result.sameSchemaAfterDownUp = result.differences.length === 0;
  } finally {
    await ds.destroy().catch(() => undefined);
  }
}

const STEP: Record<RehearsalPhase, string> = { up: "up", down: "down", "up-again": "up again" };

/** Applies `files` one by one in `phase`'s direction; false (with `result.failure` set) when one fails. */
async function phase(ds: DataSource, files: MigrationFile[], which: RehearsalPhase, scratch: Scratch, context: RehearsalContext, result: DbRehearsal): Promise<boolean> {
  const direction = which === "down" ? "down" : "up";
  for (const file of files) {
    if (context.signal?.aborted) {
      result.failure = { db: result.db, migration: file.name, phase: which, message: "interrupted before this migration" };
      return false;
    }
    const transaction = (file.migration as { transaction?: boolean }).transaction !== false;
    const event = { db: result.db, step: STEP[which], detail: file.name };
    context.progress?.({ ...event, phase: "start" });
    const probe = await watchMigration(ds, file);
    try {
      const step = await applyMigration(ds, probe.file(), direction, {
        runId: context.runId, command: "migration:rehearse", timeouts: context.timeouts, signal: context.signal, cancelBackend: (pid) => scratch.cancelBackend(pid),
      });
      const seen = await probe.finish();
      result.migrations.push({
        name: file.name, phase: which, durationMs: Math.max(0, Math.round((step.durationMs - seen.overheadMs) * 10) / 10), transaction,
        ...(step.lockRetries ? { lockRetries: step.lockRetries } : {}),
        statements: seen.statements, rewritten: seen.rewritten, rows: seen.rows,
      });
    } catch (error) {
      const message = context.signal?.aborted ? "interrupted (rolled back)" : describeError(error, scratch.target).message;
      const seen = await probe.finish().catch(() => undefined);
      const failed = seen?.statements.find((s) => s.error);
      result.migrations.push({
        name: file.name, phase: which, durationMs: 0, transaction, statements: seen?.statements ?? [], rewritten: [], rows: {}, error: message,
      });
      result.failure = { db: result.db, migration: file.name, phase: which, message, ...(failed ? { statement: failed.sql } : {}) };
      return false;
    } finally {
      context.progress?.({ ...event, phase: "end" });
    }
  }
  return true;
}
