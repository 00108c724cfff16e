// Backups before anything changes: `pg_dump -Fc` of each database into
// <backup dir>/<run id>/<db>.dump, a manifest (sha256, size, server version, migration state before),
// every archive checked with `pg_restore --list`. Directory 0700, files 0600. Restore and retention.
import * as crypto from "crypto";
import * as fs from "fs";
import * as path from "path";
import type { DbTarget } from "./config";
import { connectClient } from "./connect";
import type { DbName } from "./databases";
import { MigrationError } from "./errors";
import { readApplied } from "./history";
import { findPgTool, firstError, pgEnv, runPgTool } from "./pg-tools";

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

export interface BackupRequest {
  db: DbName;
  target: DbTarget;
}

/** A long step started or ended: the CLI shows those that take a while. */
export type Progress = (event: { db: DbName; step: string; detail?: string; phase: "start" | "end" }) => void;

async function sha256Of(file: string): Promise<string> {
  const hash = crypto.createHash("sha256");
  for await (const chunk of fs.createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest("hex");
}

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

async function backupOne(request: BackupRequest, dir: string, connectTimeoutMs: number, progress?: Progress): Promise<BackupEntry> {
  const { db, target } = request;
  const started = Date.now();
  const client = await connectClient(target, connectTimeoutMs);
  let serverVersion: string;
  let serverMajor: number;
  let applied: string[];
  try {
    serverVersion = (await client.query(`SHOW server_version`)).rows[0].server_version;
    serverMajor = Math.floor(Number((await client.query(`SHOW server_version_num`)).rows[0].server_version_num) / 10000);
    applied = (await readApplied(client)).map((a) => a.name);
  } finally {
    await client.end().catch(() => undefined);
  }
  const file = path.join(dir, `${db}.dump`);
  progress?.({ db, step: "backup", phase: "start" });
  let binary: string;
  try {
    binary = findPgTool("pg_dump", serverMajor);
  } catch (error) {
    throw new MigrationError((error as Error).message, db);
  }
  const fd = fs.openSync(file, "wx", 0o600);
  let result;
  try {
    // -Z1: most of the compression for a fraction of the time of the default level.
    result = await runPgTool(binary, ["-Fc", "-Z", "1", "--no-password", "--lock-wait-timeout=60000"], pgEnv(target), fd);
  } finally {
    fs.closeSync(fd);
  }
  if (result.code !== 0) {
    fs.rmSync(file, { force: true });
    throw new MigrationError(`pg_dump failed: ${firstError(result.stderr)}`, db);
  }
  const entries = await verifyArchive(file, db, serverMajor);
  const size = fs.statSync(file).size;
  progress?.({ db, step: "backup", phase: "end" });
  return {
    db, database: target.database, file: `${db}.dump`, sha256: await sha256Of(file), size, serverVersion, applied,
    tables: entries.filter((e) => / TABLE DATA /.test(e)).length, durationMs: Date.now() - started,
  };
}

/** Backs up the given databases in parallel into <backupDir>/<runId>/; all verified or it throws. */
export async function backupDatabases(
  requests: BackupRequest[],
  options: { backupDir: string; runId: string; reason: string; connectTimeoutMs: number; progress?: Progress },
): Promise<{ dir: string; manifest: BackupManifest }> {
  const dir = path.join(options.backupDir, options.runId);
  if (!requests.length) return { dir, manifest: { runId: options.runId, createdAt: new Date().toISOString(), reason: options.reason, databases: [] } };
  prepareDir(dir, requests[0].db);
  const settled = await Promise.allSettled(requests.map((r) => backupOne(r, dir, options.connectTimeoutMs, options.progress)));
  const failed = settled.find((s): s is PromiseRejectedResult => s.status === "rejected");
  const manifest: BackupManifest = {
    runId: options.runId,
    createdAt: new Date().toISOString(),
    reason: options.reason,
    databases: settled.flatMap((s) => (s.status === "fulfilled" ? [s.value] : [])),
  };
  fs.writeFileSync(path.join(dir, MANIFEST), JSON.stringify(manifest, null, 2) + "\n", { mode: 0o600 });
  if (failed) throw failed.reason;
  return { dir, manifest };
}

/** Removes the oldest run directories (those with a manifest) beyond the newest `keep`. */
export function pruneBackups(backupDir: string, keep: number): string[] {
  if (!fs.existsSync(backupDir)) return [];
  const runs = fs.readdirSync(backupDir)
    .filter((d) => fs.existsSync(path.join(backupDir, d, MANIFEST)))
    .sort(); // run ids start with a UTC timestamp: lexical order is age order
  const removed = runs.slice(0, Math.max(0, runs.length - keep));
  for (const d of removed) fs.rmSync(path.join(backupDir, d), { recursive: true, force: true });
  return removed;
}

export function readManifest(dir: string): BackupManifest {
  const file = path.join(dir, MANIFEST);
  if (!fs.existsSync(file)) throw new MigrationError(`no backup manifest at ${file}`);
  return JSON.parse(fs.readFileSync(file, "utf8")) as BackupManifest;
}
