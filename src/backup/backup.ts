// Backups before anything changes: `pg_dump -Fc` of each database into
// <backup dir>/<run id>/<db>.dump, a manifest (sha256, size, server version, migration state before),
// every archive checked with `pg_restore --list`. Directory 0700, files 0600. Restore and retention.
import * as crypto from "crypto";
import * as fs from "fs";
import * as path from "path";
import type { DbTarget } from "../config";
import { DbName, isDbName } from "../databases";
import { MigrationError } from "../errors";
import { settleAll } from "../postgres/sql";
import { applicationName } from "../postgres/data-source";
import { findPgTool, firstError, pgEnv, runPgTool } from "../postgres/client-programs";

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
  /** Migrations applied, oldest first. */
  applied: string[];
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

export async function sha256Of(file: string): Promise<string> {
  const hash = crypto.createHash("sha256");
  for await (const chunk of fs.createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest("hex");
}

/**
 * pg_dump into `file`, which we create 0600 first (pg_dump keeps the mode of an existing file).
 * Written by pg_dump itself rather than through a pipe, the archive is seekable: its table of
 * contents records where each table's data is, which parallel restore (`pg_restore -j`) needs.
 * pg_dump fsyncs it before exiting.
 */
async function dumpTo(file: string, target: DbTarget, compression: number, runId: string): Promise<{ sha256: string; size: number; stderr: string; code: number | null }> {
  fs.closeSync(fs.openSync(file, "wx", 0o600));
  // The newest pg_dump installed: one older than the server refuses, and says so.
  const result = await runPgTool(findPgTool("pg_dump", 0), ["-Fc", "-Z", String(compression), "--no-password", "--lock-wait-timeout=60000", "-f", file], pgEnv(target, undefined, `${applicationName(runId)} pg_dump`));
  if (result.code !== 0) return { sha256: "", size: 0, stderr: result.stderr, code: result.code };
  return { sha256: await sha256Of(file), size: fs.statSync(file).size, stderr: result.stderr, code: result.code };
}

async function backupOne(request: BackupRequest, dir: string, compression: number, runId: string, progress?: Progress): Promise<BackupEntry> {
  const { db, target } = request;
  const started = Date.now();
  const file = path.join(dir, `${db}.dump`);
  progress?.({ db, step: "backup", phase: "start" });
  let dump: Awaited<ReturnType<typeof dumpTo>>;
  try {
    dump = await dumpTo(file, target, compression, runId);
  } catch (error) {
    dump = { sha256: "", size: 0, stderr: String((error as Error).message), code: -1 };
  }
  if (dump.code !== 0) {
    fs.rmSync(file, { force: true });
    throw new MigrationError(`pg_dump failed: ${firstError(dump.stderr)}`, db);
  }
  const entries = await verifyArchive(file, db, request.serverMajor);
  progress?.({ db, step: "backup", phase: "end" });
  return {
    db, database: target.database, file: `${db}.dump`, sha256: dump.sha256, size: dump.size,
    serverVersion: request.serverVersion, applied: request.applied,
    tables: entries.filter((e) => / TABLE DATA /.test(e)).length, durationMs: Date.now() - started,
  };
}

/** Backs up the given databases in parallel into <backupDir>/<runId>/; all verified or it throws. */
export async function backupDatabases(
  requests: BackupRequest[],
  options: { backupDir: string; runId: string; reason: string; compression: number; progress?: Progress },
): Promise<{ dir: string; manifest: BackupManifest }> {
  const dir = path.join(options.backupDir, options.runId);
  const manifest: BackupManifest = { runId: options.runId, createdAt: new Date().toISOString(), reason: options.reason, databases: [] };
  if (!requests.length) return { dir, manifest };
  prepareDir(dir, requests[0].db);
  // The manifest lists what was backed up, also when another database's backup failed.
  const write = async (entries: BackupEntry[]) => {
    manifest.databases = entries;
    writeDurably(path.join(dir, MANIFEST), JSON.stringify(manifest, null, 2) + "\n");
  };
  await write(await settleAll(requests.map((r) => backupOne(r, dir, options.compression, options.runId, options.progress)), write));
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

/** When a backup run was made; undefined for a manifest we cannot read (never pruned: not ours to judge). */
function createdAt(dir: string): number | undefined {
  try {
    return Date.parse(readManifest(dir).createdAt) || undefined;
  } catch {
    return undefined;
  }
}

/** Removes the oldest run directories (those with a manifest) beyond the newest `keep`. */
export function pruneBackups(backupDir: string, keep: number): string[] {
  if (!fs.existsSync(backupDir)) return [];
  // Oldest first by the manifest's creation time (two runs in one second share an id prefix).
  const runs = fs.readdirSync(backupDir)
    .filter((d) => fs.existsSync(path.join(backupDir, d, MANIFEST)))
    .map((d) => ({ d, at: createdAt(path.join(backupDir, d)) }))
    .filter((r): r is { d: string; at: number } => r.at !== undefined)
    .sort((a, b) => a.at - b.at || a.d.localeCompare(b.d))
    .map((r) => r.d);
  const removed = runs.slice(0, Math.max(0, runs.length - keep));
  for (const d of removed) fs.rmSync(path.join(backupDir, d), { recursive: true, force: true });
  return removed;
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
