// db:backup: the deploy's backup step on its own, under the deploy lock so it sees no half-run.
// A server restart mid-backup is waited out (MIGRATION_RECONNECT_BUDGET) and the dump taken again;
// Ctrl-C or a failure leaves no run directory. Then retention, counted per database.
import { backupDatabases, BackupManifest, Progress, PrunedRun, pruneBackups } from "../backup/backup";
import type { Config } from "../config";
import type { DbName } from "../databases";
import { checkExists, withLockedStates } from "../deploy/plan";
import { ReconnectEvent, Reconnects } from "../deploy/reconnects";
import { backupRequestOf, recoverFor } from "../deploy/steps";
import { newRunId } from "../run-id";
import type { LockWait } from "../runner/locks";

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
  const { dir, manifest } = await withLockedStates(config, options.dbs, { runId, lockTimeoutMs: options.lockTimeoutMs ?? 120_000, onWait: options.onWait }, (states) => {
    states.forEach(checkExists);
    const sessions = [...new Set(states.map((s) => s.session!))];
    const reconnects = new Reconnects(config, sessions, runId, options.onReconnect, options.signal);
    return backupDatabases(states.map(backupRequestOf), {
      backupDir: config.backupDir, runId, reason: "db:backup", compression: config.backupCompression, progress: options.progress,
      signal: options.signal, recover: recoverFor(states, reconnects),
    });
  });
  const keep = options.keep ?? config.backupKeep;
  return { command: "backup", runId, dir, manifest, pruned: pruneBackups(config.backupDir, keep), keep };
}
