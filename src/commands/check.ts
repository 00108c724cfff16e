// migration:check: every way a database can have drifted, as findings (CI-friendly, exit 1 on any):
// entity drift (TypeORM's diff is not empty), history drift (checksums, missing files, pending),
// schema drift (the live catalog differs from what the applied migrations produce).
import { diffCatalogs, readCatalog } from "../schema/catalog";
import type { Config } from "../config";
import type { DbName } from "../databases";
import { closeStates, readStates } from "../deploy/plan";
import { schemaDiff } from "../schema/diff";
import { shadowCatalog } from "../schema/shadow";

export interface DbCheck {
  db: DbName;
  /** SQL TypeORM would generate to bring the database to the entities. */
  entityDrift: string[];
  /** Checksum mismatches, applied migrations with no file, pending migrations. */
  historyDrift: string[];
  /** Differences of the live schema from the one the applied migrations build. */
  schemaDrift: string[];
}

export interface CheckReport {
  command: "check";
  ok: boolean;
  databases: DbCheck[];
}

export async function checkDatabases(config: Config, dbs: DbName[], options: { shadowUrl?: string } = {}): Promise<CheckReport> {
  const states = await readStates(config, dbs);
  try {
    const databases: DbCheck[] = [];
    for (const s of states) {
      const check: DbCheck = { db: s.db, entityDrift: [], historyDrift: [], schemaDrift: [] };
      databases.push(check);
      if (!s.exists) {
        check.historyDrift.push(`database ${s.target.database} does not exist`);
        continue;
      }
      for (const f of s.changedFiles) check.historyDrift.push(`${f.file} was edited after it was applied (checksum differs)`);
      for (const name of s.missingFiles) check.historyDrift.push(`applied migration ${name} has no file`);
      for (const f of s.pending) check.historyDrift.push(`${f.name} is pending`);
      if (s.applied.length === 0 && s.tableCount > 0) {
        check.historyDrift.push(`has ${s.tableCount} tables but no migration history (adopt it with migration:baseline)`);
      } else if (!s.missingFiles.length) {
        const appliedNames = new Set(s.applied.map((a) => a.name));
        const expected = await shadowCatalog(s.target, s.files.filter((f) => appliedNames.has(f.name)), { shadowUrl: options.shadowUrl, connectTimeoutMs: config.connectTimeoutMs });
        check.schemaDrift = diffCatalogs(await readCatalog(s.dataSource), expected);
      }
      check.entityDrift = (await schemaDiff(s.dataSource)).up.map((q) => q.query);
    }
    const ok = databases.every((d) => !d.entityDrift.length && !d.historyDrift.length && !d.schemaDrift.length);
    return { command: "check", ok, databases };
  } finally {
    await closeStates(states);
  }
}
