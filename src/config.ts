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
  /** How long a run keeps trying to reach a server it lost, per outage (MIGRATION_RECONNECT_BUDGET, default 60s). */
  reconnectBudgetMs: number;
  /** Backups kept per database: the newest N runs holding it (MIGRATION_BACKUP_KEEP, default 10). */
  backupKeep: number;
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
  const reconnectBudgetMs = durationSetting(env.MIGRATION_RECONNECT_BUDGET, "MIGRATION_RECONNECT_BUDGET", "60s");
  const backupKeep = keepCount(env.MIGRATION_BACKUP_KEEP) ?? 10;

  if (isUnconfigured(env)) {
    if (isProduction(env)) {
      throw new UsageError("no database configured: set DATABASE_URL, or AUTHDB_URL, APIDB_URL and ADMINDB_URL");
    }
    const base = options.embeddedUrl?.();
    if (!base) throw new UsageError("no database configured and the embedded server is not set up: run `npm run db:up`");
    const parsed = parsePostgresUrl(base, "embedded server URL");
    const targets = {} as Record<DbName, DbTarget>;
    for (const db of DATABASES) targets[db] = target(db, parsed, db, "embedded");
    return { targets, server: "embedded", backupDir, migrationsDir, connectTimeoutMs, backupCompression, lockDatabase, reconnectBudgetMs, backupKeep };
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
  return { targets, server: "configured", backupDir, migrationsDir, connectTimeoutMs, backupCompression, lockDatabase, reconnectBudgetMs, backupKeep };
}

/**
 * pg_dump's compression level. 0 by default: measured (bench:backup), gzip doubles a dump's time on
 * text and more on vectors, which do not compress; retention bounds the space instead.
 */
function compressionLevel(raw: string | undefined): number {
  if (raw === undefined || raw === "") return 0;
  if (!/^[0-9]$/.test(raw)) throw new UsageError("MIGRATION_BACKUP_COMPRESSION must be a level from 0 to 9");
  return Number(raw);
}

/** A duration in PostgreSQL's spelling ("500ms", "60s", "1min", a bare number is ms) -> milliseconds. */
export function durationSetting(raw: string | undefined, variable: string, fallback: string): number {
  const m = /^(\d+)\s*(ms|s|min|h|d)?$/.exec((raw === undefined || raw === "" ? fallback : raw).trim());
  if (!m) throw new UsageError(`${variable} must be a duration like 5s, 500ms, 15min or 0 (got ${JSON.stringify(raw)})`);
  return Number(m[1]) * { ms: 1, s: 1_000, min: 60_000, h: 3_600_000, d: 86_400_000 }[m[2] ?? "ms"]!;
}

/** A backup retention count (MIGRATION_BACKUP_KEEP or --keep): whole runs per database, at least 1. */
export function keepCount(raw: string | undefined): number | undefined {
  if (raw === undefined || raw === "") return undefined;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < 1) throw new UsageError("MIGRATION_BACKUP_KEEP / --keep must be a whole number of runs, at least 1");
  return value;
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
