// migration:baseline: adopts databases built by the legacy init.sql. Builds the baseline (each
// database's first migration) in a shadow database, compares catalogs with the live database, and
// only when they are identical records the baseline as applied. Touches no data. Otherwise refuses,
// listing every difference, and records nothing.
import { diffCatalogs, readCatalog } from "../schema/catalog";
import type { Config } from "../config";
import type { DbName } from "../databases";
import { ensureBookkeeping, recordApplied, recordHistory } from "../runner/history";
import { checkExists, withLockedStates } from "../deploy/plan";
import { newRunId } from "../run-id";
import type { LockWait } from "../runner/locks";
import { shadowCatalog } from "../schema/shadow";

export interface DbBaselineResult {
  db: DbName;
  status: "baselined" | "has-history" | "empty" | "refused";
  migration?: string;
  differences: string[];
}

export interface BaselineReport {
  command: "baseline";
  runId: string;
  ok: boolean;
  databases: DbBaselineResult[];
}

export async function baselineDatabases(config: Config, dbs: DbName[], options: { shadowUrl?: string; lockTimeoutMs: number; onWait?: LockWait }): Promise<BaselineReport> {
  const runId = newRunId();
  const databases: DbBaselineResult[] = [];
  await withLockedStates(config, dbs, { runId, lockTimeoutMs: options.lockTimeoutMs, onWait: options.onWait }, async (states) => {
    states.forEach(checkExists);
    {
      for (const s of states) {
        const baseline = s.files[0];
        if (s.applied.length) {
          databases.push({ db: s.db, status: "has-history", differences: [] });
          continue;
        }
        if (s.tableCount === 0 || !baseline) {
          databases.push({ db: s.db, status: "empty", differences: [] });
          continue;
        }
        const expected = await shadowCatalog(s.target, [baseline], { shadowUrl: options.shadowUrl, connectTimeoutMs: config.connectTimeoutMs });
        const differences = diffCatalogs(await readCatalog(s.dataSource), expected);
        if (differences.length) {
          databases.push({ db: s.db, status: "refused", migration: baseline.name, differences });
          continue;
        }
        await ensureBookkeeping(s.dataSource);
        await s.dataSource.transaction(async (manager) => {
          await recordApplied(manager, baseline);
          await recordHistory(manager, { name: baseline.name, checksum: baseline.checksum, runId, direction: "baseline", command: "migration:baseline", durationMs: 0 });
        });
        databases.push({ db: s.db, status: "baselined", migration: baseline.name, differences: [] });
      }
    }
  });
  return { command: "baseline", runId, ok: databases.every((d) => d.status !== "refused"), databases };
}
