// Opening connections: TypeORM DataSources and plain pg clients, with every failure turned into a
// one-line MigrationError naming the database and the cause (never the password).
import { Client } from "pg";
import type { DataSource } from "typeorm";
import type { DbTarget } from "../config";
import { scrubSecrets } from "../config";
import { applicationName, dataSourceOptions } from "./data-source";
import { MigrationError, UsageError } from "../errors";
import { quoteIdent } from "./sql";

interface PgLikeError {
  code?: string;
  message?: string;
  errno?: number;
  detail?: string;
  driverError?: { detail?: string };
}

function secretsOf(target: DbTarget): string[] {
  try {
    const password = decodeURIComponent(new URL(target.url).password);
    return password ? [password, encodeURIComponent(password)] : [];
  } catch {
    return [];
  }
}

/** Translates a connection or query error into one printable line for `target`. */
export function describeError(error: unknown, target: DbTarget, connectTimeoutMs?: number): MigrationError {
  if (error instanceof MigrationError) return error;
  const e = (error ?? {}) as PgLikeError;
  const where = (() => {
    const u = new URL(target.url);
    return `${u.hostname}:${u.port || 5432}`;
  })();
  let message: string;
  switch (e.code) {
    case "ECONNREFUSED":
      message = `cannot connect to ${where}: connection refused`;
      break;
    case "ENOTFOUND":
    case "EAI_AGAIN":
      message = `cannot resolve host ${new URL(target.url).hostname}`;
      break;
    case "ETIMEDOUT":
    case "EHOSTUNREACH":
    case "ENETUNREACH":
      message = `cannot connect to ${where}: ${e.code}`;
      break;
    default: {
      const first = String(e.message ?? error).split("\n")[0];
      // PostgreSQL's DETAIL says which row or key (`Key (knowledge_base_id)=(...) is not present in
      // table "knowledge_bases".`): kept, on the same line. TypeORM keeps pg's error as driverError.
      const detail = e.detail ?? e.driverError?.detail;
      message = /timeout/i.test(first) && !e.code
        ? `cannot connect to ${where}: timed out${connectTimeoutMs ? ` after ${connectTimeoutMs} ms` : ""}`
        : detail ? `${first}: ${String(detail).split("\n")[0]}` : first;
    }
  }
  // A login the server refuses (wrong password, unknown role, no pg_hba entry) is configuration: exit 2.
  const Kind = e.code === "28P01" || e.code === "28000" ? UsageError : MigrationError;
  return new Kind(scrubSecrets(message, secretsOf(target)), target.db);
}

/**
 * A connected pg client for `target`, or for another database on the same server. `runId` names the
 * run on the server; `null` sends no application_name at all (a pooler would pass it on to the
 * next client of the server connection).
 */
export async function connectClient(target: DbTarget, connectTimeoutMs: number, database?: string, runId?: string | null): Promise<Client> {
  const url = new URL(target.url);
  if (database) url.pathname = "/" + encodeURIComponent(database);
  const client = new Client({ connectionString: url.toString(), connectionTimeoutMillis: connectTimeoutMs, application_name: runId === null ? undefined : applicationName(runId), keepAlive: true, keepAliveInitialDelayMillis: 10_000 });
  client.on("error", () => undefined); // a dropped idle connection must not crash the process
  try {
    await client.connect();
  } catch (error) {
    await client.end().catch(() => undefined);
    throw describeError(error, target, connectTimeoutMs);
  }
  return client;
}

/** A client on the target's server, outside its database: `postgres`, else `template1`. */
export async function connectServer(target: DbTarget, connectTimeoutMs: number, runId?: string | null): Promise<Client> {
  return connectClient(target, connectTimeoutMs, "postgres", runId).catch(() => connectClient(target, connectTimeoutMs, "template1", runId));
}

/**
 * Creates the target database (found missing) with the target's own credentials, so its role owns
 * it. Returns true if it created it, false if it exists meanwhile.
 */
export async function createDatabase(target: DbTarget, connectTimeoutMs: number, runId?: string): Promise<boolean> {
  const admin = await connectServer(target, connectTimeoutMs, runId);
  try {
    await admin.query(`CREATE DATABASE ${quoteIdent(target.database)}`);
    return true;
  } catch (error) {
    const e = error as PgLikeError;
    if (e.code === "42P04" || e.code === "23505") return false; // created meanwhile by a concurrent run
    if (e.code === "42501") throw new MigrationError(`database "${target.database}" does not exist and this role may not create it`, target.db);
    throw describeError(error, target);
  } finally {
    await admin.end().catch(() => undefined);
  }
}

/** An initialized TypeORM DataSource for `target`. */
export async function openDataSource(target: DbTarget, connectTimeoutMs: number, runId?: string): Promise<DataSource> {
  // TypeORM is loaded on first use: commands on plain connections (db:backup) start without it.
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { DataSource } = require("typeorm") as typeof import("typeorm");
  const dataSource = new DataSource(dataSourceOptions(target.db, target.url, connectTimeoutMs, runId));
  try {
    await dataSource.initialize();
  } catch (error) {
    throw describeError(error, target, connectTimeoutMs);
  }
  return dataSource;
}
