// Backups before anything changes: `pg_dump -Fc` of each database into
// <backup dir>/<run id>/<db>.dump, its big tables' data beside it as binary COPY files
// (table-data.ts) from the archive's own snapshot, a manifest (sha256, size, server version,
// migration state before, each data file with its rows), every archive checked with
// `pg_restore --list`, every data file read back and checked as it is written. Directory 0700, files 0600.
// Restore and retention.
import * as crypto from "crypto";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import type { Client } from "pg";
import type { DbTarget } from "../config";
import { DbName, isDbName } from "../databases";
import { MigrationError } from "../errors";
import { quoteIdent, settleAll } from "../postgres/sql";
import { applicationName } from "../postgres/data-source";
import { connectClient } from "../postgres/connect";
import { findPgTool, firstError, pgEnv, runPgTool } from "../postgres/client-programs";
import { isConnectionLost } from "../postgres/reconnect";
import { readApplied } from "../runner/history";
import { bigTables, copyOut, DataFile, DataTask, excludePattern, inParallel } from "./table-data";

export const MANIFEST = "manifest.json";

export interface BackupEntry {
  db: DbName;
  database: string;
  file: string;
  sha256: string;
  size: number;
  serverVersion: string;
  /** Migrations applied when the backup was taken, oldest first. */
  applied: string[];
  tables: number;
  durationMs: number;
  /** The big tables' data, as binary COPY files beside the archive (whose data section leaves them out). */
  data?: DataFile[];
}

export interface BackupManifest {
  runId: string;
  createdAt: string;
  reason: string;
  databases: BackupEntry[];
}

/** A database to back up, with the facts for its manifest (read by the caller under the deploy lock). */
export interface BackupRequest {
  db: DbName;
  target: DbTarget;
  serverVersion: string;
  serverMajor: number;
  /** Migrations applied, oldest first; without it, read in the backup's own snapshot. */
  applied?: string[];
}

/** A long step started or ended: the CLI shows those that take a while. */
export type Progress = (event: { db: DbName; step: string; detail?: string; phase: "start" | "end" }) => void;

/** Makes (0700) and checks the run's backup directory; a clear error when it cannot be written. */
function prepareDir(dir: string, db: DbName): void {
  try {
    fs.mkdirSync(path.dirname(dir), { recursive: true, mode: 0o700 });
    fs.mkdirSync(dir, { mode: 0o700 });
    fs.chmodSync(dir, 0o700);
    fs.accessSync(dir, fs.constants.W_OK);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? "error";
    throw new MigrationError(`backup directory ${path.dirname(dir)} is not writable (${code}); set MIGRATION_BACKUP_DIR or use --no-backup`, db);
  }
}

/** Lists an archive's table of contents; throws when pg_restore cannot read it. Returns its entries. */
export async function verifyArchive(file: string, db: DbName, serverMajor: number): Promise<string[]> {
  const result = await runPgTool(findPgTool("pg_restore", serverMajor), ["--list", file], { PATH: process.env.PATH });
  if (result.code !== 0) throw new MigrationError(`backup ${path.basename(file)} does not verify: ${firstError(result.stderr)}`, db);
  return result.stdout.split("\n").filter((l) => l && !l.startsWith(";"));
}

async function fsyncFile(file: string): Promise<void> {
  const handle = await fs.promises.open(file, "r");
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

export async function sha256Of(file: string): Promise<string> {
  const hash = crypto.createHash("sha256");
  for await (const chunk of fs.createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest("hex");
}

/**
 * pg_dump into `file`, which we create 0600 first (pg_dump keeps the mode of an existing file).
 * Written by pg_dump itself rather than through a pipe, the archive is seekable: its table of
 * contents records where each table's data is, which parallel restore (`pg_restore -j`) needs.
 * The caller flushes it to disk (fsync) while it verifies it.
 */
async function dumpTo(file: string, target: DbTarget, compression: number, runId: string, extra: string[], signal?: AbortSignal): Promise<void> {
  fs.rmSync(file, { force: true }); // a try cut off by a lost connection
  fs.closeSync(fs.openSync(file, "wx", 0o600));
  // The newest pg_dump installed: one older than the server refuses, and says so.
  const result = await runPgTool(findPgTool("pg_dump", 0), ["-Fc", "-Z", String(compression), "--no-password", "--no-sync", "--lock-wait-timeout=60000", ...extra, "-f", file], pgEnv(target, undefined, `${applicationName(runId)} pg_dump`), signal);
  if (signal?.aborted) throw new MigrationError("backup interrupted", target.db);
  if (result.code !== 0) throw new DumpFailure(`pg_dump failed: ${firstError(result.stderr)}`, result.stderr);
}

/** A failed pg_dump or COPY, with what the program said (a lost connection is tried again). */
class DumpFailure extends Error {
  constructor(message: string, readonly detail: string) {
    super(message);
  }
}

/** COPY files read at once per database (each a server backend): one per core, 2 to 4. */
const COPY_JOBS = Math.max(2, Math.min(4, os.cpus().length));

/**
 * The session whose snapshot the archive and the data files share (and the migrations applied, when
 * the caller has not read them): REPEATABLE READ, the big
 * tables locked (ACCESS SHARE, as pg_dump's own) until every file is written, its snapshot
 * exported. Without big tables there is nothing to share: the session ends at once.
 */
async function openSnapshot(request: BackupRequest, runId: string, dataFiles: boolean, connectTimeoutMs: number, signal?: AbortSignal): Promise<{ client?: Client; snapshot?: string; tasks: DataTask[]; applied: string[] }> {
  const client = await connectClient(request.target, connectTimeoutMs, undefined, runId).catch((error: Error) => {
    throw new DumpFailure(`pg_dump failed: ${error.message}`, error.message); // a server away: tried again
  });
  // Ctrl-C while it waits for a table's lock: the session ends at once.
  const onAbort = () => void client.end().catch(() => undefined);
  signal?.addEventListener("abort", onAbort, { once: true });
  client.once("end", () => signal?.removeEventListener("abort", onAbort));
  try {
    await client.query("SET idle_in_transaction_session_timeout = 0; SET statement_timeout = 0; SET lock_timeout = '60s'");
    // The big tables are listed first and locked before the snapshot is taken (LOCK TABLE takes
    // none): a TRUNCATE or rewrite committed in between cannot leave the snapshot an emptied table.
    const listed = dataFiles ? await bigTables(client, request.serverMajor) : [];
    const name = (t: { schema: string; table: string }) => `${quoteIdent(t.schema)}.${quoteIdent(t.table)}`;
    await client.query("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
    if (listed.length) await client.query(`LOCK TABLE ${[...new Set(listed.map(name))].join(", ")} IN ACCESS SHARE MODE`);
    // Read again under the locks and the snapshot: the columns as they are now; a table that grew
    // big meanwhile is not locked here and stays with pg_dump.
    const locked = new Set(listed.map(name));
    const tasks = listed.length ? (await bigTables(client, request.serverMajor)).filter((t) => locked.has(name(t))) : [];
    const applied = request.applied ?? (await readApplied(client)).map((a) => a.name);
    if (!tasks.length) {
      await client.end().catch(() => undefined);
      return { tasks, applied };
    }
    const { rows } = await client.query<{ snapshot: string }>("SELECT pg_export_snapshot() AS snapshot");
    return { client, snapshot: rows[0].snapshot, tasks, applied };
  } catch (error) {
    await client.end().catch(() => undefined);
    throw new DumpFailure(`reading the tables failed: ${String((error as Error).message ?? error).split("\n")[0]}`, String((error as Error).message ?? error));
  }
}

interface Dumped {
  file: string;
  sha256: string;
  /** The archive's table of contents. */
  entries: string[];
  data: DataFile[];
  applied: string[];
}

/** One try: the archive and the data files of one database, from one snapshot, written and flushed. */
async function dumpOnce(request: BackupRequest, dir: string, options: BackupOptions): Promise<Dumped> {
  const { db, target } = request;
  const file = path.join(dir, `${db}.dump`);
  // A compressed backup (MIGRATION_BACKUP_COMPRESSION above 0) asked for size: every table stays in the archive.
  const { client, snapshot, tasks, applied } = await openSnapshot(request, options.runId, options.compression === 0, options.connectTimeoutMs ?? 10_000, options.signal);
  try {
    const extra = snapshot ? [`--snapshot=${snapshot}`, ...[...new Set(tasks.map(excludePattern))]] : [];
    const psql = tasks.length ? psqlFor(db) : "";
    const application = `${applicationName(options.runId)} copy`;
    // The first failure stops the rest (a pg_dump that gave up need not wait for every COPY, nor the
    // other way round); that failure is the one reported.
    const stop = new AbortController();
    const onAbort = () => stop.abort();
    options.signal?.addEventListener("abort", onAbort, { once: true });
    let first: unknown;
    const failFast = <T>(work: Promise<T>) => work.catch((error: unknown) => {
      first ??= error;
      stop.abort();
      throw error;
    });
    const [archive, data] = await settleAll<unknown>([
      // Once pg_dump is done, its archive is flushed to disk (pg_dump --no-sync), checksummed and
      // its table of contents read, all at once, while the data files are still being written.
      failFast(dumpTo(file, target, options.compression, options.runId, extra, stop.signal)
        .then(() => Promise.all([sha256Of(file), verifyArchive(file, db, request.serverMajor), fsyncFile(file)]))),
      failFast(inParallel(tasks, COPY_JOBS, async (task, i) => {
        if (stop.signal.aborted) throw new MigrationError("backup interrupted", db);
        const out = path.join(dir, `${db}.data-${i + 1}.pgcopy`);
        const entry = await copyOut(psql, target, task, snapshot!, out, db, application, stop.signal).catch((error: Error) => {
          if (stop.signal.aborted) throw new MigrationError("backup interrupted", db);
          if (error instanceof MigrationError) throw error;
          throw new DumpFailure(`copying the data of ${quoteIdent(task.schema)}.${quoteIdent(task.table)} failed: ${error.message}`, error.message);
        });
        await fsyncFile(out);
        return entry;
      })),
    ]).catch((error: unknown) => {
      throw options.signal?.aborted ? error : (first ?? error);
    }).finally(() => options.signal?.removeEventListener("abort", onAbort));
    const [sha256, entries] = archive as [string, string[]];
    return { file, sha256, entries, data: data as DataFile[], applied };
  } finally {
    if (client) {
      await client.query("COMMIT").catch(() => undefined);
      await client.end().catch(() => undefined);
    }
  }
}

/** psql, which copies the big tables' data; its absence said as such (not as pg_dump failing). */
function psqlFor(db: DbName): string {
  try {
    return findPgTool("psql", 0);
  } catch (error) {
    throw new MigrationError(`the backup of its big tables needs psql: ${(error as Error).message}`, db);
  }
}

/** How a backup gets through a lost connection: resolves once the server is back (and the run's locks). */
export type Recover = (db: DbName, cause: string) => Promise<void>;

interface BackupOptions {
  backupDir: string;
  runId: string;
  reason: string;
  compression: number;
  progress?: Progress;
  /** Ctrl-C: pg_dump ended, the run directory removed. */
  signal?: AbortSignal;
  /** Without it, a lost connection fails the backup. */
  recover?: Recover;
  /** For the snapshot session (MIGRATION_CONNECT_TIMEOUT); 10 s without it. */
  connectTimeoutMs?: number;
}

/** The files of one database's earlier try (a lost connection), removed before the next. */
function removeTries(dir: string, db: DbName): void {
  for (const f of fs.readdirSync(dir)) if (f === `${db}.dump` || (f.startsWith(`${db}.data-`) && f.endsWith(".pgcopy"))) fs.rmSync(path.join(dir, f), { force: true });
}

async function backupOne(request: BackupRequest, dir: string, options: BackupOptions): Promise<BackupEntry> {
  const { db, target } = request;
  const started = Date.now();
  options.progress?.({ db, step: "backup", phase: "start" });
  let dumped: Dumped;
  for (let tries = 1; ; tries++) {
    try {
      dumped = await dumpOnce(request, dir, options);
      break;
    } catch (error) {
      removeTries(dir, db);
      if (options.signal?.aborted || error instanceof MigrationError) throw error;
      const message = String((error as Error).message ?? error);
      const detail = error instanceof DumpFailure ? error.detail : message;
      // A server restart mid-dump: the dump starts over once the server (and the run's lock) is back.
      if (!options.recover || tries > 5 || !isConnectionLost(detail)) throw new MigrationError(error instanceof DumpFailure ? message : `pg_dump failed: ${message}`, db);
      await options.recover(db, firstError(detail));
    }
  }
  const { file, sha256, entries, data, applied } = dumped;
  options.progress?.({ db, step: "backup", phase: "end" });
  const copied = new Set(data.map((d) => `${d.schema}.${d.table}`)).size;
  return {
    db, database: target.database, file: `${db}.dump`, sha256, size: fs.statSync(file).size,
    serverVersion: request.serverVersion, applied,
    tables: entries.filter((e) => / TABLE DATA /.test(e)).length + copied, durationMs: Date.now() - started,
    ...(data.length ? { data } : {}),
  };
}

/**
 * Backs up the given databases in parallel into <backupDir>/<runId>/; all verified or it throws,
 * and then the run directory is gone: an interrupted or failed backup leaves nothing behind.
 */
export async function backupDatabases(requests: BackupRequest[], options: BackupOptions): Promise<{ dir: string; manifest: BackupManifest }> {
  const dir = path.join(options.backupDir, options.runId);
  const manifest: BackupManifest = { runId: options.runId, createdAt: new Date().toISOString(), reason: options.reason, databases: [] };
  if (!requests.length) return { dir, manifest };
  prepareDir(dir, requests[0].db);
  try {
    manifest.databases = await settleAll(requests.map((r) => backupOne(r, dir, options)));
    writeDurably(path.join(dir, MANIFEST), JSON.stringify(manifest, null, 2) + "\n");
  } catch (error) {
    fs.rmSync(dir, { recursive: true, force: true });
    throw options.signal?.aborted ? new MigrationError("backup interrupted: its run directory was removed", requests[0].db) : error;
  }
  return { dir, manifest };
}

/** Writes a 0600 file and fsyncs it and its directory: a manifest that says "verified" must survive a crash. */
function writeDurably(file: string, text: string): void {
  const fd = fs.openSync(file, "w", 0o600);
  try {
    fs.writeSync(fd, text);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  const dirFd = fs.openSync(path.dirname(file), "r");
  try {
    fs.fsyncSync(dirFd);
  } finally {
    fs.closeSync(dirFd);
  }
}

/** A backup run directory removed by retention, with the databases it held. */
export interface PrunedRun {
  runId: string;
  dbs: DbName[];
}

/**
 * Retention, counted per database: a run directory goes when every database it holds has `keep`
 * newer backups. So the newest backup of every database always stays, whichever databases a run
 * backed up. Directories without a readable manifest are not ours to judge and stay.
 */
export function pruneBackups(backupDir: string, keep: number): PrunedRun[] {
  if (!fs.existsSync(backupDir)) return [];
  const runs = fs.readdirSync(backupDir)
    .filter((d) => fs.existsSync(path.join(backupDir, d, MANIFEST)))
    .flatMap((d) => {
      try {
        const m = readManifest(path.join(backupDir, d));
        const at = Date.parse(m.createdAt);
        return Number.isNaN(at) ? [] : [{ d, at, dbs: m.databases.map((e) => e.db) }];
      } catch {
        return [];
      }
    })
    // Newest first by the manifest's creation time (two runs in one second share an id prefix).
    .sort((a, b) => b.at - a.at || b.d.localeCompare(a.d));
  const seen = new Map<DbName, number>();
  const needed = new Set<string>();
  for (const run of runs) {
    for (const db of run.dbs) {
      const n = (seen.get(db) ?? 0) + 1;
      seen.set(db, n);
      if (n <= keep) needed.add(run.d);
    }
  }
  const removed = runs.filter((r) => !needed.has(r.d)); // an empty run (interrupted by an older version) too
  for (const r of removed) fs.rmSync(path.join(backupDir, r.d), { recursive: true, force: true });
  return removed.map((r) => ({ runId: r.d, dbs: r.dbs }));
}

export function readManifest(dir: string): BackupManifest {
  const file = path.join(dir, MANIFEST);
  if (!fs.existsSync(file)) throw new MigrationError(`no backup manifest at ${file}`);
  let manifest: BackupManifest;
  try {
    manifest = JSON.parse(fs.readFileSync(file, "utf8")) as BackupManifest;
  } catch {
    throw new MigrationError(`backup manifest ${file} is not valid JSON`);
  }
  if (!Array.isArray(manifest.databases) || manifest.databases.some((d) => !isDbName(String(d.db)))) {
    throw new MigrationError(`backup manifest ${file} is not one of ours (unknown database entries)`);
  }
  return manifest;
}
