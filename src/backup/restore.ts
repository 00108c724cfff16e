// db:restore: puts a backup back, into a new database first; only once pg_restore succeeded and the
// restored migration state matches the manifest does it take the database's name. The database it
// replaces is kept, renamed, for the operator to drop.
import * as crypto from "crypto";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import type { Client } from "pg";
import { BackupEntry, BackupManifest, MANIFEST, readManifest, sha256Of, verifyArchive } from "./backup";
import type { Config, DbTarget } from "../config";
import { acquireLock, releaseLock } from "../runner/locks";
import { connectClient, describeError } from "../postgres/connect";
import { quoteIdent } from "../postgres/sql";
import { DbName, isDbName } from "../databases";
import { MigrationError, UsageError } from "../errors";
import { readApplied } from "../runner/history";
import { findPgTool, firstError, pgEnv, runPgTool } from "../postgres/client-programs";
import { copyIn, restoreWithData, verifyDataFile } from "./table-data";

export interface RestoreResult {
  db: DbName;
  from: string;
  database: string;
  /** The database that had the name before, kept under this name. */
  replaced?: string;
  applied: string[];
}

export interface RestoreReport {
  command: "restore";
  runId: string;
  databases: RestoreResult[];
}

/** A run id (a folder of the backup dir), a run folder, or one `<db>.dump` file. */
export function locateBackup(backupDir: string, what: string): { dir: string; manifest: BackupManifest; only?: DbName } {
  const asFile = path.resolve(what);
  if (fs.existsSync(asFile) && fs.statSync(asFile).isFile()) {
    const db = path.basename(asFile).replace(/\.dump$/, "");
    if (!isDbName(db)) throw new UsageError(`cannot tell the database of ${path.basename(asFile)} (expected <db>.dump)`);
    return { dir: path.dirname(asFile), manifest: readManifest(path.dirname(asFile)), only: db };
  }
  for (const dir of [path.join(backupDir, what), asFile]) {
    if (fs.existsSync(path.join(dir, MANIFEST))) return { dir, manifest: readManifest(dir) };
  }
  throw new UsageError(`no backup "${what}" (neither a run id under ${backupDir} nor a backup file)`);
}

/** Parallel restore (the archives are seekable): a job per core, at most four. */
const RESTORE_JOBS = Math.max(1, Math.min(4, os.cpus().length));


async function databaseExists(admin: Client, name: string): Promise<boolean> {
  return (await admin.query(`SELECT 1 FROM pg_database WHERE datname = $1`, [name])).rowCount === 1;
}

/** Takes the name `name` for the restored `staging` database, under the deploy lock of the live one. */
async function swapIn(admin: Client, target: DbTarget, name: string, staging: string, lockTimeoutMs: number): Promise<string | undefined> {
  if (!(await databaseExists(admin, name))) {
    await admin.query(`ALTER DATABASE ${quoteIdent(staging)} RENAME TO ${quoteIdent(name)}`);
    return undefined;
  }
  // No deploy may be running against the database we are about to replace: its deploy lock is held
  // on this server session. Once we hold it, no new connection may come in (a service's pool would
  // reconnect at once and block the rename).
  await acquireLock(admin, { ...target, database: name }, lockTimeoutMs);
  let closed = false;
  try {
    await admin.query(`ALTER DATABASE ${quoteIdent(name)} ALLOW_CONNECTIONS false`);
    closed = true;
    await admin.query(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()`, [name]);
    const replaced = `${name}_replaced_${new Date().toISOString().replace(/\D/g, "").slice(0, 14)}`.slice(0, 63);
    // Both renames or neither: the name is never left empty.
    await admin.query("BEGIN");
    try {
      await admin.query(`ALTER DATABASE ${quoteIdent(name)} RENAME TO ${quoteIdent(replaced)}`);
      await admin.query(`ALTER DATABASE ${quoteIdent(staging)} RENAME TO ${quoteIdent(name)}`);
      await admin.query(`ALTER DATABASE ${quoteIdent(replaced)} ALLOW_CONNECTIONS true`);
      await admin.query("COMMIT");
    } catch (error) {
      await admin.query("ROLLBACK").catch(() => undefined);
      throw error;
    }
    closed = false;
    return replaced;
  } finally {
    if (closed) await admin.query(`ALTER DATABASE ${quoteIdent(name)} ALLOW_CONNECTIONS true`).catch(() => undefined);
    await releaseLock(admin, name);
  }
}

async function restoreOne(config: Config, dir: string, entry: BackupEntry, into: string | undefined, lockTimeoutMs: number): Promise<RestoreResult> {
  const { db } = entry;
  const target = config.targets[db];
  const file = path.join(dir, entry.file);
  if (!fs.existsSync(file)) throw new MigrationError(`backup file ${file} is missing`, db);
  if ((await sha256Of(file)) !== entry.sha256) throw new MigrationError(`backup file ${entry.file} does not match its manifest checksum: refusing to restore it`, db);
  for (const data of entry.data ?? []) await verifyDataFile(dir, data, db);
  const name = into ?? target.database;
  const staging = `${name.slice(0, 48)}_restoring_${crypto.randomBytes(3).toString("hex")}`;
  // On the database where deploys hold their locks, so the lock taken here excludes them.
  const admin = await connectClient(target, config.connectTimeoutMs, config.lockDatabase);
  try {
    if (into && (await databaseExists(admin, into))) throw new UsageError(`database "${into}" already exists: --into takes a new name`, db);
    const serverMajor = Math.floor(Number((await admin.query(`SHOW server_version_num`)).rows[0].server_version_num) / 10000);
    await verifyArchive(file, db, serverMajor);
    await admin.query(`CREATE DATABASE ${quoteIdent(staging)}`);
    try {
      // -d as a connection string, quoted, so no database name is ever read as one.
      const dbname = `dbname='${staging.replace(/\\/g, "\\\\").replace(/'/g, "\\'")}'`;
      const env = pgEnv(target, staging);
      // The big tables' data files load between the archive's data and post-data sections.
      await restoreWithData(async (section) => {
        const result = await runPgTool(findPgTool("pg_restore", serverMajor), ["--exit-on-error", "--no-password", `--jobs=${RESTORE_JOBS}`, ...(section ? [`--section=${section}`] : []), "-d", dbname, file], env);
        if (result.code !== 0) throw new MigrationError(`pg_restore failed: ${firstError(result.stderr)}`, db);
      }, entry.data, (data) => copyIn(findPgTool("psql", serverMajor), env, dir, data, db), RESTORE_JOBS);
      const restored = await connectClient(target, config.connectTimeoutMs, staging);
      let applied: string[];
      try {
        applied = (await readApplied(restored)).map((a) => a.name);
      } finally {
        await restored.end();
      }
      if (applied.join(",") !== entry.applied.join(",")) {
        throw new MigrationError(`restored migration state (${applied.length} applied) differs from the manifest (${entry.applied.length})`, db);
      }
      const replaced = await swapIn(admin, target, name, staging, lockTimeoutMs);
      return { db, from: file, database: name, replaced, applied };
    } catch (error) {
      await admin.query(`DROP DATABASE IF EXISTS ${quoteIdent(staging)} WITH (FORCE)`).catch(() => undefined);
      throw error;
    }
  } catch (error) {
    throw describeError(error, target);
  } finally {
    await admin.end().catch(() => undefined);
  }
}

export async function restoreBackup(config: Config, options: { backup: string; db?: DbName; into?: string; lockTimeoutMs: number }): Promise<RestoreReport> {
  const { dir, manifest, only } = locateBackup(config.backupDir, options.backup);
  if (only && options.db && options.db !== only) throw new UsageError(`the backup file is ${only}'s, not ${options.db}'s`, options.db);
  if (options.into !== undefined && !/^[A-Za-z_][A-Za-z0-9_$-]{0,62}$/.test(options.into)) throw new UsageError(`--into "${options.into}" is not a plain database name`);
  const wanted = options.db ?? only;
  const entries = manifest.databases.filter((e) => !wanted || e.db === wanted);
  if (!entries.length) throw new UsageError(`backup ${manifest.runId} has no ${wanted ?? "database"}`, wanted);
  if (options.into && entries.length > 1) throw new UsageError("--into restores one database: add --db <db>");
  const databases: RestoreResult[] = [];
  for (const entry of entries) {
    try {
      databases.push(await restoreOne(config, dir, entry, options.into, options.lockTimeoutMs));
    } catch (error) {
      // Say what is already restored: the databases are now from different points in time.
      if (!databases.length || !(error instanceof MigrationError)) throw error;
      const done = databases.map((d) => `${d.db}${d.replaced ? ` (previous kept as ${d.replaced})` : ""}`).join(", ");
      throw new MigrationError(`${error.message}; already restored from ${manifest.runId}: ${done}`, error.db, error.exitCode);
    }
  }
  return { command: "restore", runId: manifest.runId, databases };
}
