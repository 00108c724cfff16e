// db:backup: the deploy's backup step on its own, under the deploy lock so it sees no half-run.
import { backupDatabases, BackupManifest, Progress, pruneBackups } from "../backup/backup";
import type { Config } from "../config";
import type { DbName } from "../databases";
import { checkExists, withLockedStates } from "../deploy/plan";
import { backupRequestOf } from "../deploy/steps";
import { newRunId } from "../run-id";
import type { LockWait } from "../runner/locks";

export interface BackupReport {
  command: "backup";
  runId: string;
  dir: string;
  manifest: BackupManifest;
  pruned: string[];
}

export async function backupCommand(config: Config, dbs: DbName[], keep: number | undefined, progress?: Progress, lockTimeoutMs = 120_000, onWait?: LockWait): Promise<BackupReport> {
  const runId = newRunId();
  const { dir, manifest } = await withLockedStates(config, dbs, { runId, lockTimeoutMs, onWait }, (states) => {
    states.forEach(checkExists);
    const requests = states.map(backupRequestOf);
    return backupDatabases(requests, { backupDir: config.backupDir, runId, reason: "db:backup", compression: config.backupCompression, progress });
  });
  const pruned = keep !== undefined ? pruneBackups(config.backupDir, keep) : [];
  return { command: "backup", runId, dir, manifest, pruned };
}
