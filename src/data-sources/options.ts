// DataSource options for one database: its entities, its migrations, our connection defaults.
import "reflect-metadata";
import "../quiet-warnings";
import { DataSource } from "typeorm";
import type { PostgresDataSourceOptions } from "typeorm/driver/postgres/PostgresDataSourceOptions";
import { loadConfig, readDotEnv } from "../config";
import type { DbName } from "../databases";
import { embeddedUrl } from "../embedded";
import { entities as admindbEntities } from "../entities/admindb";
import { entities as apidbEntities } from "../entities/apidb";
import { entities as authdbEntities } from "../entities/authdb";
import { loadMigrationFiles } from "../migration-files";

export const ENTITIES: Record<DbName, Function[]> = {
  authdb: authdbEntities,
  apidb: apidbEntities,
  admindb: admindbEntities,
};

export const MIGRATIONS_TABLE = "migrations";

/** `migrationsRoot` undefined: TypeORM is not told about migrations (our runner loads them itself). */
export function dataSourceOptions(db: DbName, url: string, connectTimeoutMs = 10_000, migrationsRoot?: string): PostgresDataSourceOptions {
  return {
    type: "postgres",
    url,
    entities: ENTITIES[db],
    migrations: migrationsRoot ? loadMigrationFiles(migrationsRoot, db).map((m) => m.migrationClass) : [],
    migrationsTableName: MIGRATIONS_TABLE,
    migrationsTransactionMode: "each",
    synchronize: false,
    // TypeORM would otherwise CREATE EXTENSION on every connect: reading must change nothing, and
    // the migrations themselves create the extensions they need (so check can tell when one does not).
    installExtensions: false,
    logging: false,
    connectTimeoutMS: connectTimeoutMs,
    applicationName: "ai-micro-migrations",
    extra: { max: 4 },
  };
}

/** The DataSource the plain TypeORM CLI uses for `db`, configured from the environment / `.env`. */
export function dataSourceFromEnv(db: DbName): DataSource {
  readDotEnv();
  const config = loadConfig(process.env, { embeddedUrl });
  const target = config.targets[db];
  return new DataSource(dataSourceOptions(db, target.url, config.connectTimeoutMs, config.migrationsDir));
}
