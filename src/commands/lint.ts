// migration:lint: squawk over the SQL of each database's pending migrations (or all of them), as a
// report; a finding the migration has not accepted (lint = { ignore: { rule: reason } }) fails it.
// Changes nothing: the state is read, the SQL is recorded, never run. A database that does not
// exist has every migration pending; with `all`, no database is even connected to.
import type { Config } from "../config";
import type { DbName } from "../databases";
import { closeStates, readStates } from "../deploy/plan";
import { checkLoadable, loadMigrationFiles, MigrationFile } from "../runner/migration-files";
import { AcceptedFinding, IgnoreComment, LintFinding, lintFiles, offlineDataSource, squawkBinary, squawkVersion } from "../safety/lint";

export interface DbLint {
  db: DbName;
  database: string;
  /** Whether the database exists; null with `all` (not asked). */
  exists: boolean | null;
  /** The migrations linted, oldest first. */
  migrations: string[];
  findings: LintFinding[];
  accepted: AcceptedFinding[];
  ignoreComments: IgnoreComment[];
}

export interface LintReport {
  command: "lint";
  /** No finding left unaccepted. */
  ok: boolean;
  /** "pending" migrations, or "all" of them. */
  scope: "pending" | "all";
  squawkVersion: string;
  databases: DbLint[];
}

export interface LintCommandOptions {
  dbs: DbName[];
  /** Every migration, applied ones too (no database is read). */
  all?: boolean;
}

/**
 * @example
 *   const report = await lintMigrations(config, { dbs: ["apidb"] });
 *   report.ok; // false when a pending migration has a finding it does not accept
 */
export async function lintMigrations(config: Config, options: LintCommandOptions): Promise<LintReport> {
  const binary = squawkBinary(); // before anything else: not installed, say so first
  const version = await squawkVersion(binary);
  const lintOne = async (db: DbName, files: MigrationFile[], exists: boolean | null, dataSource = offlineDataSource(db)): Promise<DbLint> => {
    checkLoadable(db, files);
    const result = await lintFiles(db, files, { dataSource, squawk: binary });
    const { findings, accepted, ignoreComments, migrations } = result;
    return { db, database: config.targets[db].database, exists, migrations, findings, accepted, ignoreComments };
  };

  let databases: DbLint[];
  if (options.all) {
    databases = await Promise.all(options.dbs.map((db) => lintOne(db, loadMigrationFiles(config.migrationsDir, db), null)));
  } else {
    const states = await readStates(config, options.dbs);
    try {
      databases = await Promise.all(states.map((s) => lintOne(s.db, s.pending, s.exists, s.dataSource)));
    } finally {
      await closeStates(states);
    }
  }
  return { command: "lint", ok: databases.every((d) => !d.findings.length), scope: options.all ? "all" : "pending", squawkVersion: version, databases };
}
