// The DataSource the plain TypeORM CLI uses for one database, configured from the environment /
// `.env`, with the migrations of that database (the CLI wants exactly one DataSource per file).
import { DataSource } from "typeorm";
import { applyEnvironment, loadConfig } from "../config";
import type { DbName } from "../databases";
import { dataSourceOptions } from "../postgres/data-source";
import { embeddedUrl } from "../postgres/embedded";
import { loadMigrationFiles } from "../runner/migration-files";

export function dataSourceFromEnv(db: DbName): DataSource {
  applyEnvironment(process.env, process.cwd());
  const config = loadConfig(process.env, { embeddedUrl });
  const target = config.targets[db];
  const migrations = loadMigrationFiles(config.migrationsDir, db).map((m) => m.migrationClass);
  return new DataSource({ ...dataSourceOptions(db, target.url, config.connectTimeoutMs), migrations });
}
