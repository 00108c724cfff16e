// db:backup: the deploy's backup step on its own, under the deploy lock so it sees no half-run.
// A server restart mid-backup is waited out (MIGRATION_RECONNECT_BUDGET) and the dump taken again;
// Ctrl-C or a failure leaves no run directory. Then retention, counted per database.
// It reads only what a backup needs (which databases exist; what each has applied, in the backup's
// own snapshot) on plain connections, so the command loads neither TypeORM nor the migration files.
import { backupDatabases, BackupManifest, BackupRequest, Progress, PrunedRun, pruneBackups } from "../backup/backup";
import type { Config } from "../config";
import { DATABASES, DbName } from "../databases";
import { MigrationError } from "../errors";
import { settleAll } from "../postgres/sql";
import { ReconnectEvent, Reconnects } from "../deploy/reconnects";
import { existingDatabases, LockWait, withLocks } from "../runner/locks";
import { newRunId } from "../run-id";

export interface BackupReport {
  command: "backup";
  runId: string;
  dir: string;
  manifest: BackupManifest;
  /** Older runs removed by retention (the newest `keep` per database stay). */
  pruned: PrunedRun[];
  keep: number;
}

export interface BackupCommandOptions {
  dbs: DbName[];
  /** --keep N (else MIGRATION_BACKUP_KEEP, default 10): runs kept per database. */
  keep?: number;
  progress?: Progress;
  lockTimeoutMs?: number;
  onWait?: LockWait;
  onReconnect?: ReconnectEvent;
  signal?: AbortSignal;
}

export async function backupCommand(config: Config, options: BackupCommandOptions): Promise<BackupReport> {
  const runId = newRunId();
  // admindb is locked too, as by every run (withLockedStates): a backup sees no run half-way.
  const locked = DATABASES.filter((db) => options.dbs.includes(db) || db === "admindb");
  const { dir, manifest } = await withLocks(config, locked, { timeoutMs: options.lockTimeoutMs ?? 120_000, runId, onWait: options.onWait }, async (sessions) => {
    const existing = await Promise.all(sessions.map(existingDatabases));
    const requests = await settleAll(sessions.flatMap((session, i) => session.targets.filter((t) => options.dbs.includes(t.db)).map(async (target): Promise<BackupRequest> => {
      if (!existing[i].has(target.database)) throw new MigrationError(`database "${target.database}" does not exist (migration:run creates it)`, target.db);
      // The migrations applied are read in the backup's own snapshot.
      return { db: target.db, target, serverVersion: session.serverVersion, serverMajor: session.serverMajor };
    })));
    requests.sort((a, b) => DATABASES.indexOf(a.db) - DATABASES.indexOf(b.db));
    const reconnects = new Reconnects(config, sessions, runId, options.onReconnect, options.signal);
    return backupDatabases(requests, {
      backupDir: config.backupDir, runId, reason: "db:backup", compression: config.backupCompression, connectTimeoutMs: config.connectTimeoutMs, progress: options.progress, signal: options.signal,
      // Once the server (and the lock) is back, the dump starts over; it reads what is applied again,
      // in its own snapshot, so the manifest always says what the archive holds.
      recover: async (db, cause) => reconnects.recover(requests.find((r) => r.db === db)!.target, new Error(cause)),
    });
  });
  const keep = options.keep ?? config.backupKeep;
  return { command: "backup", runId, dir, manifest, pruned: pruneBackups(config.backupDir, keep), keep };
}
