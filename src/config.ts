// Environment -> validated connection settings, one per database, with passwords kept out of
// anything printable (see `redactUrl`).
import * as fs from "fs";
import * as path from "path";
import { DATABASES, DbName } from "./databases";
import { UsageError } from "./errors";

import { MIGRATIONS_ROOT } from "./paths";

export { MIGRATIONS_ROOT };

export interface DbTarget {
  db: DbName;
  /** Full connection URL, password included: never print it, print `display` instead. */
  url: string;
  /** The database name on the server (`authdb` unless renamed). */
  database: string;
  /** Where the setting came from: `AUTHDB_URL`, `AUTHDB_DIRECT_URL`, `DATABASE_URL`, `DATABASE_DIRECT_URL` or `embedded`. */
  source: string;
  /** The URL with its password replaced by `***`. */
  display: string;
}

export interface Config {
  targets: Record<DbName, DbTarget>;
  /** "configured" when the environment names servers, "embedded" for the local `.pgdata/` server. */
  server: "configured" | "embedded";
  backupDir: string;
  /** Root of the per-database migration folders (`src/migrations`, or MIGRATIONS_DIR). */
  migrationsDir: string;
  connectTimeoutMs: number;
  /** pg_dump's compression level, 0-9 (MIGRATION_BACKUP_COMPRESSION). */
  backupCompression: number;
  /** The database on each server where the deploy locks are held (MIGRATION_LOCK_DATABASE, default `postgres`). */
  lockDatabase: string;
  /** Expand/contract and backfill settings (MIGRATION_BACKFILL_*, MIGRATION_CONTRACT_IDLE). */
  evolve: EvolveSettings;
}

/** Settings of expand/contract migrations and their batched backfills. */
export interface EvolveSettings {
  /** Rows per backfill batch, each its own short transaction (MIGRATION_BACKFILL_BATCH, default 1000). */
  batchSize: number;
  /** A backfill waits while a streaming replica is further behind than this (MIGRATION_BACKFILL_MAX_REPLICA_LAG, default 5s). */
  maxReplicaLag: string;
  /** migration:complete refuses while a client wrote an old column more recently than this (MIGRATION_CONTRACT_IDLE, default 5min). */
  contractIdle: string;
}

const DURATION = /^\d+\s*(ms|s|min|h|d)?$/;

/** The expand/contract settings from an environment, checked (a UsageError names the variable). */
export function evolveSettings(env: Env): EvolveSettings {
  const duration = (variable: string, fallback: string) => {
    const raw = env[variable];
    if (raw === undefined || raw === "") return fallback;
    if (!DURATION.test(raw.trim())) throw new UsageError(`${variable} must be a duration like 5s, 500ms, 15min or 0 (got ${JSON.stringify(raw)})`);
    return raw.trim();
  };
  return {
    batchSize: positiveInt(env.MIGRATION_BACKFILL_BATCH, "MIGRATION_BACKFILL_BATCH", 1000),
    maxReplicaLag: duration("MIGRATION_BACKFILL_MAX_REPLICA_LAG", "5s"),
    contractIdle: duration("MIGRATION_CONTRACT_IDLE", "5min"),
  };
}

export type Env = Record<string, string | undefined>;

const URL_VARS: Record<DbName, string> = { authdb: "AUTHDB_URL", apidb: "APIDB_URL", admindb: "ADMINDB_URL" };
/** A direct URL (past a transaction pooler) for migrations; the plain URL stays the applications'. */
const DIRECT_VARS: Record<DbName, string> = { authdb: "AUTHDB_DIRECT_URL", apidb: "APIDB_DIRECT_URL", admindb: "ADMINDB_DIRECT_URL" };
const NAME_VARS: Record<DbName, string> = { authdb: "AUTHDB_NAME", apidb: "APIDB_NAME", admindb: "ADMINDB_NAME" };

/** Replaces the password of a connection URL by `***`; leaves unparsable text without anything after `//user:`. */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = "***";
    return parsed.toString();
  } catch {
    return url.replace(/\/\/([^:/@]*):[^@]*@/, "//$1:***@");
  }
}

/** Removes every occurrence of the given secrets from a message. */
export function scrubSecrets(message: string, secrets: Iterable<string>): string {
  let out = message;
  for (const secret of secrets) {
    if (secret && secret.length >= 3) out = out.split(secret).join("***");
  }
  return out;
}

/** Parses and checks a postgres URL; throws a UsageError naming the variable (never its value). */
export function parsePostgresUrl(url: string, variable: string, db?: DbName): URL {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new UsageError(`${variable} is not a valid URL (expected postgres://user:password@host:5432/name)`, db);
  }
  if (parsed.protocol !== "postgres:" && parsed.protocol !== "postgresql:") {
    throw new UsageError(`${variable} must start with postgres:// or postgresql:// (got ${parsed.protocol}//)`, db);
  }
  if (!parsed.hostname) throw new UsageError(`${variable} has no host`, db);
  if (parsed.port && !/^\d+$/.test(parsed.port)) throw new UsageError(`${variable} has an invalid port`, db);
  return parsed;
}

function databaseNameOf(parsed: URL): string {
  return decodeURIComponent(parsed.pathname.replace(/^\//, ""));
}

function target(db: DbName, parsed: URL, database: string, source: string): DbTarget {
  const withDb = new URL(parsed.toString());
  withDb.pathname = "/" + encodeURIComponent(database);
  const url = withDb.toString();
  return { db, url, database, source, display: redactUrl(url) };
}

export function migrationsRootFrom(env: Env): string {
  return env.MIGRATIONS_DIR ? path.resolve(env.MIGRATIONS_DIR) : MIGRATIONS_ROOT;
}

/** True when the environment names no server at all. */
export function isUnconfigured(env: Env): boolean {
  return !env.DATABASE_URL && !env.DATABASE_DIRECT_URL && DATABASES.every((db) => !env[URL_VARS[db]] && !env[DIRECT_VARS[db]]);
}

export function isProduction(env: Env): boolean {
  return env.NODE_ENV === "production";
}

export interface LoadOptions {
  /** Base URL (no database) of the embedded server, used only when the environment names none. */
  embeddedUrl?: () => string | undefined;
}

/** Reads the configuration from an environment (process.env after `.env` was applied). */
export function loadConfig(env: Env, options: LoadOptions = {}): Config {
  const connectTimeoutMs = positiveInt(env.MIGRATION_CONNECT_TIMEOUT_MS, "MIGRATION_CONNECT_TIMEOUT_MS", 10_000);
  const backupDir = path.resolve(env.MIGRATION_BACKUP_DIR || "backups");
  const migrationsDir = migrationsRootFrom(env);
  const backupCompression = compressionLevel(env.MIGRATION_BACKUP_COMPRESSION);
  const lockDatabase = env.MIGRATION_LOCK_DATABASE || "postgres";
  const evolve = evolveSettings(env);

  if (isUnconfigured(env)) {
    if (isProduction(env)) {
      throw new UsageError("no database configured: set DATABASE_URL, or AUTHDB_URL, APIDB_URL and ADMINDB_URL");
    }
    const base = options.embeddedUrl?.();
    if (!base) throw new UsageError("no database configured and the embedded server is not set up: run `npm run db:up`");
    const parsed = parsePostgresUrl(base, "embedded server URL");
    const targets = {} as Record<DbName, DbTarget>;
    for (const db of DATABASES) targets[db] = target(db, parsed, db, "embedded");
    return { targets, server: "embedded", backupDir, migrationsDir, connectTimeoutMs, backupCompression, lockDatabase, evolve };
  }

  // A *_DIRECT_URL wins over its plain URL: migrations never go through a transaction pooler.
  const sharedVar = env.DATABASE_DIRECT_URL ? "DATABASE_DIRECT_URL" : "DATABASE_URL";
  const shared = env[sharedVar] ? parsePostgresUrl(env[sharedVar]!, sharedVar) : undefined;
  const targets = {} as Record<DbName, DbTarget>;
  for (const db of DATABASES) {
    const ownVar = env[DIRECT_VARS[db]] ? DIRECT_VARS[db] : URL_VARS[db];
    const own = env[ownVar];
    if (own) {
      const parsed = parsePostgresUrl(own, ownVar, db);
      targets[db] = target(db, parsed, databaseNameOf(parsed) || env[NAME_VARS[db]] || db, ownVar);
    } else if (shared) {
      targets[db] = target(db, shared, env[NAME_VARS[db]] || db, sharedVar);
    } else {
      throw new UsageError(`no URL configured: set ${URL_VARS[db]} or DATABASE_URL`, db);
    }
  }
  // Two names for one database would deploy it twice (and wait on its own lock).
  const seen = new Map<string, DbName>();
  for (const db of DATABASES) {
    const u = new URL(targets[db].url);
    const key = `${u.hostname}:${u.port || 5432}/${targets[db].database}`;
    const other = seen.get(key);
    if (other) throw new UsageError(`is configured as the same database as ${other} (${key})`, db);
    seen.set(key, db);
  }
  return { targets, server: "configured", backupDir, migrationsDir, connectTimeoutMs, backupCompression, lockDatabase, evolve };
}

/** pg_dump's compression level: 1 keeps most of the size gain at a fraction of the default's CPU. */
function compressionLevel(raw: string | undefined): number {
  if (raw === undefined || raw === "") return 1;
  if (!/^[0-9]$/.test(raw)) throw new UsageError("MIGRATION_BACKUP_COMPRESSION must be a level from 0 to 9");
  return Number(raw);
}

function positiveInt(raw: string | undefined, variable: string, fallback: number): number {
  if (raw === undefined || raw === "") return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value <= 0) throw new UsageError(`${variable} must be a positive integer`);
  return value;
}

/** The variables that say which server and database: they come from one source, never mixed. */
const CONNECTION_VAR = /^((DATABASE|AUTHDB|APIDB|ADMINDB)(_DIRECT)?_URL|(AUTHDB|APIDB|ADMINDB)_NAME)$/;

/**
 * Applies env files to `env`, `files` first to last in falling precedence, `env` itself first of
 * all. Every other setting is taken from the first source that has it; the connection variables
 * (URLs, direct URLs, database names) all from the first source that has any of them, so
 * `--env production` can never send one database to the server `.env` names for development.
 * `connectionFromEnv: false` ignores connection variables already in `env` (comparing environments).
 */
export function applyEnvFiles(env: Env, files: string[], options: { connectionFromEnv?: boolean } = {}): void {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const dotenv = require("dotenv") as typeof import("dotenv");
  const sources = files.filter((f) => fs.existsSync(f)).map((f) => dotenv.parse(fs.readFileSync(f)) as Env);
  const ownConnection = Object.keys(env).filter((k) => CONNECTION_VAR.test(k) && env[k]);
  if (options.connectionFromEnv === false) for (const k of ownConnection) delete env[k];
  let connection = options.connectionFromEnv === false ? undefined : ownConnection.length ? env : undefined;
  for (const source of sources) {
    connection ??= Object.keys(source).some((k) => CONNECTION_VAR.test(k) && source[k]) ? source : undefined;
    for (const [key, value] of Object.entries(source)) {
      if (CONNECTION_VAR.test(key) ? source === connection && env[key] === undefined : env[key] === undefined) env[key] = value;
    }
  }
}

/** Applies `.env` from the working directory to `env` (variables already set win). */
export function readDotEnv(env: Env = process.env, file = path.resolve(".env")): void {
  if (!fs.existsSync(file)) return;
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const dotenv = require("dotenv") as typeof import("dotenv");
  const parsed = dotenv.parse(fs.readFileSync(file));
  for (const [key, value] of Object.entries(parsed)) if (env[key] === undefined) env[key] = value;
}

/** One line for the top of every command's output: which server(s) are used, passwords hidden. */
export function describeServer(config: Config): string {
  if (config.server === "embedded") {
    return `server: embedded local PostgreSQL (${new URL(config.targets.authdb.display).host}, .pgdata/)`;
  }
  const hosts = DATABASES.map((db) => {
    const t = config.targets[db];
    const u = new URL(t.display);
    return `${db}=${u.username ? u.username + "@" : ""}${u.host}/${t.database}`;
  });
  return `server: ${hosts.join(" ")}`;
}
