// Every setting read from the environment, with its default (SETTINGS, mirrored by the README's
// configuration table), and environment -> validated connection settings, one per database, with
// passwords kept out of anything printable (see `redactUrl`).
import * as fs from "fs";
import * as path from "path";
import { DATABASES, DbName } from "./databases";
import { UsageError } from "./errors";

import { MIGRATIONS_ROOT } from "./paths";

export { MIGRATIONS_ROOT };

export type Env = Record<string, string | undefined>;

/**
 * One setting: its variable, its default value (as written in the environment), or `shown` when the
 * default is not a value ("keep all"). `hidden`: for the test suite only, not in the README.
 */
export interface Setting {
  variable: string;
  default?: string;
  shown?: string;
  hidden?: boolean;
}

/** Every setting any part of the tool reads from the environment; the README's table lists the same. */
export const SETTINGS = [
  { variable: "DATABASE_URL" },
  { variable: "AUTHDB_URL" },
  { variable: "APIDB_URL" },
  { variable: "ADMINDB_URL" },
  { variable: "AUTHDB_DIRECT_URL" },
  { variable: "APIDB_DIRECT_URL" },
  { variable: "ADMINDB_DIRECT_URL" },
  { variable: "DATABASE_DIRECT_URL" },
  { variable: "AUTHDB_NAME", default: "authdb" },
  { variable: "APIDB_NAME", default: "apidb" },
  { variable: "ADMINDB_NAME", default: "admindb" },
  { variable: "MIGRATION_BACKUP_DIR", default: "./backups" },
  { variable: "MIGRATION_BACKUP_KEEP", default: "10" },
  { variable: "MIGRATION_BACKUP_COMPRESSION", default: "0" },
  { variable: "MIGRATION_RECONNECT_BUDGET", default: "60s" },
  { variable: "MIGRATION_BACKFILL_BATCH", default: "1000" },
  { variable: "MIGRATION_BACKFILL_MAX_REPLICA_LAG", default: "5s" },
  { variable: "MIGRATION_CONTRACT_IDLE", default: "5min" },
  { variable: "MIGRATION_CONNECT_TIMEOUT_MS", default: "10000" },
  { variable: "MIGRATION_LOCK_WAIT_MS", default: "120000" },
  { variable: "MIGRATION_LOCK_DATABASE", default: "postgres" },
  { variable: "MIGRATION_LOCK_TIMEOUT", default: "100ms" },
  { variable: "MIGRATION_LOCK_RETRY_BUDGET", default: "5min" },
  { variable: "MIGRATION_STATEMENT_TIMEOUT", default: "15min" },
  { variable: "MIGRATIONS_DIR", default: "src/migrations" },
  { variable: "MIGRATION_SHADOW_URL" },
  { variable: "MIGRATION_SCRATCH_URL" },
  { variable: "PGPASSWORD" },
  { variable: "PG_BIN_DIR" },
  { variable: "NODE_ENV" },
  // Set by npm for the scripts it runs: whether its `> script` banner went to stdout.
  { variable: "npm_lifecycle_event", hidden: true },
  { variable: "npm_config_loglevel", hidden: true },
  // The reliability suite kills a deploy at its n-th progress event (0: never).
  { variable: "MIGRATION_TEST_KILL_AT", default: "0", hidden: true },
] as const satisfies readonly Setting[];

export type SettingName = (typeof SETTINGS)[number]["variable"];

/** A setting's value: the environment's when set and not empty, else its default (undefined when none). */
export function setting(env: Env, variable: SettingName): string | undefined {
  const value = env[variable];
  if (value !== undefined && value !== "") return value;
  return (SETTINGS.find((s) => s.variable === variable) as Setting).default;
}

/** lock_timeout, statement_timeout and the lock-retry budget of each migration, as PostgreSQL durations. */
export interface Timeouts {
  /** Longest wait for a table lock in one try, e.g. "100ms" (MIGRATION_LOCK_TIMEOUT). */
  lockTimeout: string;
  /** Longest single statement, e.g. "15min" (MIGRATION_STATEMENT_TIMEOUT). */
  statementTimeout: string;
  /** How long to keep retrying a migration whose lock was not free, e.g. "5min"; "0": try once (MIGRATION_LOCK_RETRY_BUDGET). */
  lockRetryBudget: string;
}

export const DEFAULT_TIMEOUTS: Timeouts = {
  lockTimeout: setting({}, "MIGRATION_LOCK_TIMEOUT")!,
  statementTimeout: setting({}, "MIGRATION_STATEMENT_TIMEOUT")!,
  lockRetryBudget: setting({}, "MIGRATION_LOCK_RETRY_BUDGET")!,
};

/** Checks a PostgreSQL duration ("5s", "500ms", "15min", "0"); these go into SET statements as they are. */
export function parseDuration(value: string, variable: string): string {
  if (!/^\d+\s*(ms|s|min|h|d)?$/.test(value.trim())) {
    throw new Error(`${variable} must be a duration like 5s, 500ms, 15min or 0 (got ${JSON.stringify(value)})`);
  }
  return value.trim();
}

/** The migrations' timeouts from the environment; a bad value is a UsageError naming the variable. */
export function timeoutsFrom(env: Env): Timeouts {
  const read = (variable: SettingName) => {
    try {
      return parseDuration(setting(env, variable)!, variable);
    } catch (error) {
      throw new UsageError((error as Error).message);
    }
  };
  return { lockTimeout: read("MIGRATION_LOCK_TIMEOUT"), statementTimeout: read("MIGRATION_STATEMENT_TIMEOUT"), lockRetryBudget: read("MIGRATION_LOCK_RETRY_BUDGET") };
}

/** How long a run waits for another run's deploy lock (MIGRATION_LOCK_WAIT_MS), in ms. */
export function lockWaitMsFrom(env: Env): number {
  const value = Number(setting(env, "MIGRATION_LOCK_WAIT_MS"));
  if (!Number.isInteger(value) || value < 0) throw new UsageError("MIGRATION_LOCK_WAIT_MS must be a whole number of milliseconds");
  return value;
}

/** How many backup runs to keep per database: `--keep` when given, else MIGRATION_BACKUP_KEEP (10). */
export function backupKeepFrom(env: Env, flag?: string): number | undefined {
  return keepCount(flag ?? setting(env, "MIGRATION_BACKUP_KEEP"));
}

/**
 * A scratch database URL from a flag or its variable; a password belongs in the environment
 * (MIGRATION_SHADOW_URL, MIGRATION_SCRATCH_URL, or PGPASSWORD), never in process arguments.
 */
export function scratchDatabaseUrl(env: Env, fromFlag: string | undefined, flag: string, variable: "MIGRATION_SHADOW_URL" | "MIGRATION_SCRATCH_URL"): string | undefined {
  if (fromFlag) {
    let password = "";
    try {
      password = new URL(fromFlag).password;
    } catch {
      throw new UsageError(`${flag} is not a valid URL (expected postgres://user@host:5432/scratch)`);
    }
    if (password) throw new UsageError(`${flag} must not carry a password (other users can read process arguments): set ${variable}, or PGPASSWORD`);
    return fromFlag;
  }
  return setting(env, variable);
}

/** The password for a scratch or shadow URL given without one (PGPASSWORD). */
export function pgPassword(env: Env = process.env): string | undefined {
  return setting(env, "PGPASSWORD");
}

/** Where the PostgreSQL programs are, when set (PG_BIN_DIR); otherwise they are searched for. */
export function pgBinDir(env: Env = process.env): string | undefined {
  return setting(env, "PG_BIN_DIR");
}

/** Whether npm printed its `> script` banner on this command's stdout (run by npm, without -s). */
export function npmBannerOnStdout(env: Env): boolean {
  return !!setting(env, "npm_lifecycle_event") && setting(env, "npm_config_loglevel") !== "silent";
}

/** Tests only: the progress event at which a deploy SIGKILLs itself (0: never). */
export function testKillAt(env: Env): number {
  return Number(setting(env, "MIGRATION_TEST_KILL_AT")) || 0;
}

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

/** The expand/contract settings from an environment, checked (a UsageError names the variable). */
export function evolveSettings(env: Env): EvolveSettings {
  const duration = (variable: SettingName) => {
    const raw = setting(env, variable)!;
    durationMs(raw, variable);
    return raw.trim();
  };
  return {
    batchSize: positiveInt(setting(env, "MIGRATION_BACKFILL_BATCH")!, "MIGRATION_BACKFILL_BATCH"),
    maxReplicaLag: duration("MIGRATION_BACKFILL_MAX_REPLICA_LAG"),
    contractIdle: duration("MIGRATION_CONTRACT_IDLE"),
  };
}

const URL_VARS: Record<DbName, string> = { authdb: "AUTHDB_URL", apidb: "APIDB_URL", admindb: "ADMINDB_URL" };
/** A direct URL (past a transaction pooler) for migrations; the plain URL stays the applications'. */
const DIRECT_VARS: Record<DbName, string> = { authdb: "AUTHDB_DIRECT_URL", apidb: "APIDB_DIRECT_URL", admindb: "ADMINDB_DIRECT_URL" };
const NAME_VARS: Record<DbName, SettingName> = { authdb: "AUTHDB_NAME", apidb: "APIDB_NAME", admindb: "ADMINDB_NAME" };

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
    decodeURIComponent(parsed.username + parsed.password);
    // `user:p@ss/word@host/db` parses, wrongly: the first `/` ends the host, the rest lands in the path.
    if (parsed.pathname.includes("@")) throw new Error("an @ after the host");
  } catch {
    throw new UsageError(`${variable} is not a valid URL (expected postgres://user:password@host:5432/name)${encodingHint(url)}`, db);
  }
  if (parsed.protocol !== "postgres:" && parsed.protocol !== "postgresql:") {
    throw new UsageError(`${variable} must start with postgres:// or postgresql:// (got ${parsed.protocol}//)`, db);
  }
  if (!parsed.hostname) throw new UsageError(`${variable} has no host`, db);
  if (parsed.port && !/^\d+$/.test(parsed.port)) throw new UsageError(`${variable} has an invalid port${encodingHint(url)}`, db);
  return parsed;
}

/**
 * A hint when the part before the host (`user:password@`) holds a character a URL gives a meaning
 * to: `@` (only the last one ends the password), `/`, `?`, `#` or a `%` not starting an escape.
 * Says which characters, never the password.
 */
function encodingHint(url: string): string {
  const m = /^[a-z]+:\/\/(.*)@[^@]*$/i.exec(url);
  if (!m) return "";
  const userinfo = m[1];
  const colon = userinfo.indexOf(":");
  const password = colon < 0 ? "" : userinfo.slice(colon + 1);
  const found = [...new Set([...(colon < 0 ? userinfo : userinfo.slice(0, colon) + password).matchAll(/[@/?#]|%(?![0-9a-fA-F]{2})/g)].map((c) => c[0]))];
  if (!found.length) return "";
  const codes = found.map((c) => `${c} as ${encodeURIComponent(c)}`);
  return `; the user or password holds ${found.join(" ")}: URL-encode it (${codes.join(", ")})`;
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
  return env.MIGRATIONS_DIR ? path.resolve(env.MIGRATIONS_DIR) : MIGRATIONS_ROOT; // the default, src/migrations, of this checkout
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
  const connectTimeoutMs = positiveInt(setting(env, "MIGRATION_CONNECT_TIMEOUT_MS")!, "MIGRATION_CONNECT_TIMEOUT_MS");
  const backupDir = path.resolve(setting(env, "MIGRATION_BACKUP_DIR")!);
  const migrationsDir = migrationsRootFrom(env);
  const backupCompression = compressionLevel(setting(env, "MIGRATION_BACKUP_COMPRESSION")!);
  const lockDatabase = setting(env, "MIGRATION_LOCK_DATABASE")!;
  const reconnectBudgetMs = durationMs(setting(env, "MIGRATION_RECONNECT_BUDGET")!, "MIGRATION_RECONNECT_BUDGET");
  const backupKeep = backupKeepFrom(env)!;
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
    return { targets, server: "embedded", backupDir, migrationsDir, connectTimeoutMs, backupCompression, lockDatabase, reconnectBudgetMs, backupKeep, evolve };
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
      targets[db] = target(db, parsed, databaseNameOf(parsed) || setting(env, NAME_VARS[db])!, ownVar);
    } else if (shared) {
      targets[db] = target(db, shared, setting(env, NAME_VARS[db])!, sharedVar);
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
  return { targets, server: "configured", backupDir, migrationsDir, connectTimeoutMs, backupCompression, lockDatabase, reconnectBudgetMs, backupKeep, evolve };
}

/**
 * pg_dump's compression level. 0 by default: measured (bench:backup), gzip doubles a dump's time on
 * text and more on vectors, which do not compress; retention bounds the space instead.
 */
function compressionLevel(raw: string): number {
  if (!/^[0-9]$/.test(raw)) throw new UsageError("MIGRATION_BACKUP_COMPRESSION must be a level from 0 to 9");
  return Number(raw);
}

/** A duration in PostgreSQL's spelling ("500ms", "60s", "1min", a bare number is ms) -> milliseconds. */
export function durationMs(raw: string, variable: string): number {
  const m = /^(\d+)\s*(ms|s|min|h|d)?$/.exec(raw.trim());
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

function positiveInt(raw: string, variable: string): number {
  const value = Number(raw);
  if (!Number.isInteger(value) || value <= 0) throw new UsageError(`${variable} must be a positive integer`);
  return value;
}

/** The variables that say which server and database: they come from one source, never mixed. */
const CONNECTION_VAR = /^((DATABASE|AUTHDB|APIDB|ADMINDB)(_DIRECT)?_URL|(AUTHDB|APIDB|ADMINDB)_NAME)$/;

const connectionVars = (env: Env): string[] => Object.keys(env).filter((k) => CONNECTION_VAR.test(k) && env[k]).sort();

/** The environments of a directory: its `.env.<name>` files (`.env.example`, `-sample`, `-template` are not ones). */
export function environmentsIn(dir: string): string[] {
  return fs.readdirSync(dir)
    .map((f) => /^\.env\.([\w.-]+)$/.exec(f)?.[1])
    .filter((n): n is string => !!n && !/^(example|sample|template)$/.test(n))
    .sort();
}

/** Where a command's connection settings came from: `the shell`, `.env`, `.env.<name>`, or nowhere (the embedded server). */
export interface ConnectionSource {
  /** The `--env` name, if one was given. */
  env?: string;
  /** `the shell`, `.env` or `.env.<name>`; undefined when nothing names a server. */
  from?: string;
  /** Why the shell's settings were used with `--env` (its file names no server). */
  note?: string;
}

function readEnvFile(file: string): Env {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const dotenv = require("dotenv") as typeof import("dotenv");
  return fs.existsSync(file) ? (dotenv.parse(fs.readFileSync(file)) as Env) : {};
}

/**
 * Applies the settings files of `dir` to `env` (the shell's environment), by one rule for every
 * command, single- or multi-environment:
 * - the connection settings (URLs, direct URLs, database names) all come from one place, never
 *   mixed. With `--env <name>`: from `.env.<name>`; if the shell names a server too, refused (either
 *   choice could deploy where the operator did not mean, and a label printed after the fact cannot
 *   undo that); if the file names none, from the shell (a CI job's secrets), said in the first line;
 *   if neither does, refused (never `.env`'s development server under another name). Without
 *   `--env`: the shell, else `.env`.
 * - every other setting: the shell, then `.env.<name>`, then `.env`.
 *
 * @example applyEnvironment(process.env, process.cwd(), "staging") // { env: "staging", from: ".env.staging" }
 */
export function applyEnvironment(env: Env, dir: string, name?: string): ConnectionSource {
  const dotEnv = readEnvFile(path.join(dir, ".env"));
  const shell = connectionVars(env);
  let named: Env = {};
  let connection: { from: string; vars: Env } | undefined;
  let note: string | undefined;
  if (name !== undefined) {
    if (!/^[\w.-]+$/.test(name)) throw new UsageError(`--env "${name}": expected a name like staging (reads .env.staging)`);
    const file = `.env.${name}`;
    if (!fs.existsSync(path.join(dir, file))) {
      const found = environmentsIn(dir).map((n) => `.env.${n}`);
      throw new UsageError(`--env ${name}: ${file} not found in ${dir} (${found.length ? `found: ${found.join(", ")}` : "no .env.<name> file there"})`);
    }
    named = readEnvFile(path.join(dir, file));
    const own = connectionVars(named);
    if (own.length && shell.length) {
      throw new UsageError(`--env ${name}: the shell sets ${shell.join(", ")} and ${file} sets ${own.join(", ")}: unset the shell's (or leave out --env), so one place says which server`);
    }
    if (own.length) connection = { from: file, vars: named };
    else if (shell.length) {
      connection = { from: "the shell", vars: env };
      note = `${file} names no server`;
    } else throw new UsageError(`--env ${name}: ${file} names no server (set DATABASE_URL, or AUTHDB_URL, APIDB_URL and ADMINDB_URL, in it)`);
  } else if (shell.length) connection = { from: "the shell", vars: env };
  else if (connectionVars(dotEnv).length) connection = { from: ".env", vars: dotEnv };

  const connectionValues = connection ? Object.fromEntries(connectionVars(connection.vars).map((k) => [k, connection!.vars[k]])) : {};
  for (const k of shell) delete env[k];
  for (const source of [named, dotEnv]) {
    for (const [key, value] of Object.entries(source)) if (!CONNECTION_VAR.test(key) && env[key] === undefined) env[key] = value;
  }
  Object.assign(env, connectionValues);
  return { ...(name !== undefined ? { env: name } : {}), ...(connection ? { from: connection.from } : {}), ...(note ? { note } : {}) };
}

/**
 * One line for the top of every command's output: which server(s) are used, passwords hidden, and
 * where that came from: `env staging: server: authdb=mig@db:5432/authdb ... (from .env.staging)`.
 */
export function describeServer(config: Config, source: ConnectionSource = {}): string {
  const prefix = source.env !== undefined ? `env ${source.env}: ` : "";
  const from = source.from ? ` (from ${source.from}${source.note ? `: ${source.note}` : ""})` : "";
  if (config.server === "embedded") {
    return `${prefix}server: embedded local PostgreSQL (${new URL(config.targets.authdb.display).host}, .pgdata/)`;
  }
  const hosts = DATABASES.map((db) => {
    const t = config.targets[db];
    const u = new URL(t.display);
    return `${db}=${u.username ? u.username + "@" : ""}${u.host}/${t.database}`;
  });
  return `${prefix}server: ${hosts.join(" ")}${from}`;
}
