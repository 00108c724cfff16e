// DataSource options for one database: its entities and our connection defaults. Our runner loads
// migrations itself; the plain TypeORM CLI gets them from src/data-sources/from-env.ts.
import "reflect-metadata";
import "../quiet-warnings";
import type { PostgresDataSourceOptions } from "typeorm/driver/postgres/PostgresDataSourceOptions";
import type { DbName } from "../databases";

/**
 * Each database's entities, loaded when first asked for: they load TypeORM, which commands that
 * only use plain connections (db:backup) do not need.
 */
export const ENTITIES = Object.defineProperties({} as Record<DbName, Function[]>, {
  /* eslint-disable @typescript-eslint/no-require-imports */
  authdb: { enumerable: true, get: () => (require("../entities/authdb") as typeof import("../entities/authdb")).entities },
  apidb: { enumerable: true, get: () => (require("../entities/apidb") as typeof import("../entities/apidb")).entities },
  admindb: { enumerable: true, get: () => (require("../entities/admindb") as typeof import("../entities/admindb")).entities },
  /* eslint-enable @typescript-eslint/no-require-imports */
});

export const MIGRATIONS_TABLE = "migrations";

/** What the server shows for our connections; with a run id, each run's connections can be told apart. */
export function applicationName(runId?: string): string {
  return runId ? `ai-micro-migrations run ${runId}` : "ai-micro-migrations";
}

export function dataSourceOptions(db: DbName, url: string, connectTimeoutMs = 10_000, runId?: string): PostgresDataSourceOptions {
  return {
    type: "postgres",
    url,
    entities: ENTITIES[db],
    migrations: [],
    migrationsTableName: MIGRATIONS_TABLE,
    migrationsTransactionMode: "each",
    synchronize: false,
    // TypeORM would otherwise CREATE EXTENSION on every connect: reading must change nothing, and
    // the migrations themselves create the extensions they need (so check can tell when one does not).
    installExtensions: false,
    logging: false,
    connectTimeoutMS: connectTimeoutMs,
    applicationName: applicationName(runId),
    // One connection per database: a run's connection budget (README) counts on it.
    extra: { max: 1 },
  };
}
