// migration:repair: accepts deliberate edits of applied migrations (comments, formatting) by
// recording their current checksums, like Flyway's repair. The acceptance is itself history.
import type { Config } from "../config";
import type { DbName } from "../databases";
import { recordHistory } from "../runner/history";
import { checkExists, withLockedStates } from "../deploy/plan";
import { newRunId } from "../run-id";
import type { LockWait } from "../runner/locks";

export interface RepairReport {
  command: "repair";
  runId: string;
  databases: Array<{ db: DbName; accepted: Array<{ name: string; file: string; checksum: string }> }>;
}

export async function repairChecksums(config: Config, dbs: DbName[], lockTimeoutMs: number, onWait?: LockWait): Promise<RepairReport> {
  const runId = newRunId();
  const databases: RepairReport["databases"] = [];
  await withLockedStates(config, dbs, { runId, lockTimeoutMs, onWait }, async (states) => {
    states.forEach(checkExists);
    {
      for (const s of states) {
        const accepted = [];
        for (const f of s.changedFiles) {
          await recordHistory(s.dataSource, { name: f.name, checksum: f.checksum, runId, direction: "repair", command: "migration:repair", durationMs: 0 });
          accepted.push({ name: f.name, file: f.file, checksum: f.checksum });
        }
        databases.push({ db: s.db, accepted });
      }
    }
  });
  return { command: "repair", runId, databases };
}
