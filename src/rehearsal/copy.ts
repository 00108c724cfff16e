// The copy step of a rehearsal: a database's data into its (empty) scratch database, fast.
// From the live database: `pg_dump -Fd -j <jobs> -Z0` (a directory archive, one file per table,
// dumped in parallel from one synchronized snapshot, not compressed) into a private temp directory,
// then `pg_restore -j <jobs> --no-owner --no-acl` (tables loaded and indexes built in parallel).
// From a backup: its `<db>.dump` (-Fc, seekable, so it restores in parallel too) once its sha256
// matches the manifest, and its big tables' binary COPY files once each verifies. Then VACUUM
// (ANALYZE), so the migrations meet planner statistics and a visibility map as in production, and
// no autovacuum starts under them.
// Passwords only in the programs' environment; the temp directory is 0700, its files 0600
// (umask 077), removed after, and by a later run when a killed one left it.
import { spawn } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { pgPassword, type DbTarget } from "../config";
import type { DbName } from "../databases";
import { MigrationError } from "../errors";
import type { BackupEntry } from "../backup/backup";
import { sha256Of } from "../backup/backup";
import { copyIn, restoreWithData, verifyDataFile } from "../backup/table-data";
import { findPgTool, firstError, pgEnv, ToolResult } from "../postgres/client-programs";
import { connectClient } from "../postgres/connect";
import { applicationName } from "../postgres/data-source";

/** Where the copy comes from: the live database, or a verified backup archive. */
export type CopySource =
  | { kind: "pg_dump"; target: DbTarget }
  | { kind: "backup"; runId: string; file: string; entry: BackupEntry };

export interface CopyOptions {
  db: DbName;
  runId: string;
  /** Parallel pg_dump / pg_restore jobs. */
  jobs: number;
  connectTimeoutMs: number;
  signal?: AbortSignal;
}

/** A job per core, at most 8: pg_dump holds jobs + 1 connections to the live database while it reads. */
export const COPY_JOBS = Math.max(1, Math.min(8, os.cpus().length));

/**
 * The copy time we assume before this run has measured one: a fixed cost (programs, connections,
 * catalog, VACUUM) plus the database's size (pg_database_size: data and indexes) at a rate.
 * bench/rehearse.bench.ts measured about 200 ms and 90-95 MiB/s (2 cores, the server on the same
 * host: 14 MiB in 0.28 s, 240 MiB in 2.9 s, dump, restore and VACUUM ANALYZE); we assume 80 MiB/s,
 * a little slower, for a server across a network. A run that copies a database of at least 64 MiB
 * then uses the rate it measured itself for the next ones.
 */
export const ASSUMED_COPY = { fixedMs: 200, bytesPerMs: 80 * 1048.576 /* 80 MiB/s */ };

export interface CopyRate {
  fixedMs: number;
  bytesPerMs: number;
  /** How the rate was found, for the report: `assumed 60 MiB/s` or `measured 85 MiB/s (apidb)`. */
  basis: string;
}

export function assumedRate(): CopyRate {
  return { ...ASSUMED_COPY, basis: `assumed ${Math.round((ASSUMED_COPY.bytesPerMs * 1000) / 1048576)} MiB/s` };
}

export function estimateCopyMs(sizeBytes: number, rate: CopyRate): number {
  return Math.round(rate.fixedMs + sizeBytes / rate.bytesPerMs);
}

/** The rate a finished copy shows, when it was large enough to say something; else `rate` unchanged. */
export function measuredRate(rate: CopyRate, db: DbName, sizeBytes: number, copyMs: number): CopyRate {
  if (sizeBytes < 64 * 1048576 || copyMs <= rate.fixedMs) return rate;
  const bytesPerMs = sizeBytes / (copyMs - rate.fixedMs);
  return { fixedMs: rate.fixedMs, bytesPerMs, basis: `measured ${Math.round((bytesPerMs * 1000) / 1048576)} MiB/s (${db})` };
}

/** 212 MiB, 3.1 GiB: for the progress line. */
export function sizeText(bytes: number): string {
  if (bytes < 1048576) return `${Math.max(1, Math.round(bytes / 1024))} KiB`;
  if (bytes < 1073741824) return `${Math.round(bytes / 1048576)} MiB`;
  return `${(bytes / 1073741824).toFixed(1)} GiB`;
}

/**
 * The temp directories of rehearsal copies: `aimig-rehearsal-<run id>-<pid>-XXXXXX`. The pid tells
 * a live rehearsal's directory from a killed one's, whichever server the rehearsal copies from.
 */
const TEMP_PREFIX = "aimig-rehearsal-";
const TEMP_NAME = /^aimig-rehearsal-(\d{8}T\d{6}Z-[0-9a-f]{4})-(\d+)-/;

/** Whether a process of this machine is still running. */
function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM"; // alive, another user's
  }
}

/** Temp directories earlier rehearsals left (this user's, their process gone), with their run ids. */
export function leftoverCopyDirs(): Array<{ dir: string; runId: string }> {
  const root = os.tmpdir();
  const uid = process.getuid?.();
  const out: Array<{ dir: string; runId: string }> = [];
  for (const name of fs.readdirSync(root)) {
    const m = TEMP_NAME.exec(name);
    if (!m || processAlive(Number(m[2]))) continue;
    const runId = m[1];
    try {
      if (uid !== undefined && fs.statSync(path.join(root, name)).uid !== uid) continue;
    } catch {
      continue;
    }
    out.push({ dir: path.join(root, name), runId });
  }
  return out;
}

/**
 * Runs a client program with umask 077 (every file it writes is 0600, every directory 0700), the
 * connection in its environment; killed when `signal` aborts.
 */
function runTool(binary: string, args: string[], env: NodeJS.ProcessEnv, signal?: AbortSignal): Promise<ToolResult> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve({ code: -1, stdout: "", stderr: "interrupted" });
    const child = spawn("/bin/sh", ["-c", 'umask 077 && exec "$0" "$@"', binary, ...args], { env, stdio: ["ignore", "pipe", "pipe"], signal, killSignal: "SIGTERM" });
    let stdout = "";
    let stderr = "";
    child.stdout!.on("data", (d: Buffer) => (stdout += d));
    child.stderr!.on("data", (d: Buffer) => (stderr += d));
    child.on("error", (error) => {
      if (signal?.aborted) stderr = "interrupted";
      else stderr += String(error.message);
    });
    child.on("close", (code) => resolve({ code: signal?.aborted ? -1 : code, stdout, stderr: signal?.aborted ? "interrupted" : stderr }));
  });
}

/** libpq environment for a scratch target; a URL without a password (--scratch-url) takes PGPASSWORD. */
function scratchEnv(scratch: DbTarget, program: string, runId: string): NodeJS.ProcessEnv {
  const env = pgEnv(scratch, scratch.database, `${applicationName(runId)} ${program}`);
  if (!env.PGPASSWORD) {
    const password = pgPassword();
    if (password) env.PGPASSWORD = password;
    else delete env.PGPASSWORD;
  }
  return env;
}

/**
 * pg_dump's error. One ended by the server was most likely ended by a migration:run that started
 * meanwhile: under its deploy lock it ends every other run's connections to its databases, and a
 * rehearsal takes no lock (it never makes a deploy wait).
 */
function dumpError(stderr: string): string {
  // The message depends on when pg_dump noticed: mid-query, or on its next read.
  if (/terminating connection due to administrator command|server closed the connection unexpectedly/.test(stderr)) {
    return "its connection was ended by the server (a migration:run that starts ends other runs' connections to its databases): rehearse again once the deploy is done";
  }
  return firstError(stderr);
}

/** -d as a connection string, quoted, so no database name is ever read as one. */
const dbnameArg = (name: string) => `dbname='${name.replace(/\\/g, "\\\\").replace(/'/g, "\\'")}'`;

/**
 * The archive's table of contents without what only the owner of an object may do again (COMMENT ON
 * EXTENSION): a role restoring with --no-owner into a scratch database owns everything else.
 */
async function restoreList(pgRestore: string, archive: string, listFile: string, db: DbName, signal?: AbortSignal): Promise<void> {
  const listed = await runTool(pgRestore, ["--list", archive], { PATH: process.env.PATH }, signal);
  if (listed.code !== 0) throw new MigrationError(`cannot read the archive ${path.basename(archive)}: ${firstError(listed.stderr)}`, db);
  const kept = listed.stdout.split("\n").filter((l) => !/^\d+;\s*\d+\s+\d+\s+COMMENT\s+-\s+EXTENSION\b/.test(l));
  fs.writeFileSync(listFile, kept.join("\n"), { mode: 0o600 });
}

/**
 * Copies `source` into the empty database `scratch` and vacuums it. Throws a one-line
 * MigrationError naming the program that failed.
 *
 *   await copyIntoScratch({ kind: "pg_dump", target: config.targets.apidb }, scratchTarget, { db: "apidb", runId, jobs: COPY_JOBS, connectTimeoutMs });
 */
export async function copyIntoScratch(source: CopySource, scratch: DbTarget, options: CopyOptions): Promise<void> {
  await dumpAndRestore(source, scratch, options);
  await vacuumAnalyze(scratch, options);
}

/** The copy itself: the data and schema of `source` in `scratch`, through a private temp directory. */
export async function dumpAndRestore(source: CopySource, scratch: DbTarget, options: CopyOptions): Promise<void> {
  const { db, runId, jobs, signal } = options;
  // The newest client programs installed (pg_dump itself refuses a server newer than it).
  const pgDump = findPgTool("pg_dump", 0);
  const pgRestore = findPgTool("pg_restore", 0);
  const temp = fs.mkdtempSync(path.join(os.tmpdir(), `${TEMP_PREFIX}${runId}-${process.pid}-`));
  try {
    fs.chmodSync(temp, 0o700);
    let archive: string;
    if (source.kind === "pg_dump") {
      archive = path.join(temp, "dump");
      const args = ["-Fd", `--jobs=${jobs}`, "-Z0", "--no-password", "--lock-wait-timeout=60000", "-f", archive];
      const dumped = await runTool(pgDump, args, pgEnv(source.target, undefined, `${applicationName(runId)} pg_dump`), signal);
      if (dumped.code !== 0) throw new MigrationError(signal?.aborted ? "interrupted" : `pg_dump failed: ${dumpError(dumped.stderr)}`, db);
    } else {
      archive = source.file;
      if (!fs.existsSync(archive)) throw new MigrationError(`backup file ${archive} is missing`, db);
      if ((await sha256Of(archive)) !== source.entry.sha256) {
        throw new MigrationError(`backup file ${path.basename(archive)} of ${source.runId} does not match its manifest checksum: refusing to rehearse on it`, db);
      }
      for (const data of source.entry.data ?? []) await verifyDataFile(path.dirname(archive), data, db);
    }
    const listFile = path.join(temp, "restore.list");
    await restoreList(pgRestore, archive, listFile, db, signal);
    // A backup's big tables are in data files beside the archive: loaded between its data and post-data sections.
    const data = source.kind === "backup" ? source.entry.data : undefined;
    await restoreWithData(async (section) => {
      const args = ["--no-owner", "--no-acl", "--exit-on-error", "--no-password", `--jobs=${jobs}`, ...(section ? [`--section=${section}`] : []), "-L", listFile, "-d", dbnameArg(scratch.database), archive];
      const restored = await runTool(pgRestore, args, scratchEnv(scratch, "pg_restore", runId), signal);
      if (restored.code !== 0) throw new MigrationError(signal?.aborted ? "interrupted" : `pg_restore into the scratch database failed: ${firstError(restored.stderr)}`, db);
    }, data, (entry) => copyIn(findPgTool("psql", 0), scratchEnv(scratch, "psql", runId), path.dirname(archive), entry, db, signal), jobs);
  } finally {
    fs.rmSync(temp, { recursive: true, force: true });
  }
}

/**
 * VACUUM (ANALYZE) of every table, `jobs` at a time, biggest first: planner statistics and a
 * visibility map as the live database has them (pg_restore brings neither), and nothing left for
 * autovacuum to start on in the middle of a migration, where its lock would make a statement's
 * short lock_timeout expire.
 */
export async function vacuumAnalyze(scratch: DbTarget, options: CopyOptions): Promise<void> {
  const first = await connectClient(scratch, options.connectTimeoutMs, undefined, options.runId);
  const clients = [first];
  try {
    const { rows } = await first.query<{ name: string; kind: string }>(`
      SELECT format('%I.%I', n.nspname, c.relname) AS name, c.relkind::text AS kind
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
       WHERE c.relkind IN ('r', 'm', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'
       ORDER BY c.relpages DESC, 1`);
    const queue = [...rows];
    const workers = Math.max(1, Math.min(options.jobs, queue.length));
    for (let i = 1; i < workers; i++) clients.push(await connectClient(scratch, options.connectTimeoutMs, undefined, options.runId));
    await Promise.all(clients.map(async (client) => {
      for (let next = queue.shift(); next && !options.signal?.aborted; next = queue.shift()) {
        // A partitioned table has no rows of its own: its partitions are vacuumed one by one.
        await client.query(next.kind === "p" ? `ANALYZE ${next.name}` : `VACUUM (ANALYZE) ${next.name}`);
      }
    }));
  } finally {
    await Promise.all(clients.map((c) => c.end().catch(() => undefined)));
  }
}
