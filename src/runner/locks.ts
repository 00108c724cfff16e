// The deploy lock. One session-level advisory lock per database, all held on ONE connection per
// server (its `postgres` database): a run waiting for another holds one connection per server, a
// crashed run releases its locks when its connection dies, and a database that does not exist yet
// is locked too, so two runs cannot race to create it. Locks are taken in the fixed order authdb,
// apidb, admindb (no deadlock), waited on by polling up to a timeout, released on every path.
// Before anything is locked the server is checked: a primary, not behind a transaction pooler.
import * as crypto from "crypto";
import type { Client } from "pg";
import type { Config, DbTarget } from "../config";
import { connectClient, describeError } from "../postgres/connect";
import { applicationName } from "../postgres/data-source";
import { checkNotPooled, checkPrimary } from "../postgres/server-checks";
import { DATABASES, DbName } from "../databases";
import { MigrationError } from "../errors";

/** The first key of every lock of this tool; the second one names the database. */
export const LOCK_KEY = 1_739_416_052;

/** The second lock key: a stable 31-bit number from the database's name on the server. */
export function lockKeyOf(database: string): number {
  return crypto.createHash("sha256").update(database).digest().readUInt32BE(0) & 0x7fffffff;
}

/** One connection per server, on which that server's locks are held. */
export interface ServerSession {
  /** host:port */
  server: string;
  /** The run this session belongs to: its connections carry it in application_name. */
  runId: string;
  client: Client;
  /** The targets of this run on that server, in deploy order. */
  targets: DbTarget[];
  serverVersion: string;
  serverMajor: number;
  /** Databases locked on this session, in the order taken. */
  locked: string[];
  /** The connection died (or was ended by the server): its locks are gone. */
  lost?: boolean;
}

/** Who holds a lock another run is waiting for, as far as this role may see. */
export interface LockHolder {
  runId?: string;
  pid: number;
  /** When the holding session connected (its run started about then). */
  since?: Date;
  application?: string;
}

export type LockWait = (event: { db: DbName; holder?: LockHolder; waitMs: number }) => void;

function serverOf(target: DbTarget): string {
  const u = new URL(target.url);
  return `${u.hostname}:${u.port || 5432}`;
}

/**
 * Opens and checks one session per server of `dbs` (in parallel). Refuses a standby or a pooler
 * before any lock or setting is taken. The caller ends the sessions (`closeSessions`).
 */
export async function openSessions(config: Config, dbs: DbName[], runId: string): Promise<ServerSession[]> {
  const byServer = new Map<string, DbTarget[]>();
  for (const db of DATABASES.filter((d) => dbs.includes(d))) {
    const t = config.targets[db];
    byServer.set(serverOf(t), [...(byServer.get(serverOf(t)) ?? []), t]);
  }
  const opened: ServerSession[] = [];
  const results = await Promise.allSettled([...byServer.entries()].map(async ([server, targets]) => {
    const first = targets[0];
    // Always the same database (a lock lives in one): no fallback, which could split the runs over
    // two databases and let both hold "the" lock. No application_name until the server is known to
    // be reached directly (see connectClient).
    const client = await connectClient(first, config.connectTimeoutMs, config.lockDatabase, null).catch((error: MigrationError) => {
      if (!/database|permission/i.test(error.message)) throw error;
      throw new MigrationError(`cannot open the deploy lock session on database "${config.lockDatabase}" (${error.message}): every migration role must be able to connect to it, or set MIGRATION_LOCK_DATABASE`, first.db);
    });
    const session: ServerSession = { server, runId, client, targets, serverVersion: "", serverMajor: 0, locked: [] };
    opened.push(session);
    await prepareSession(session, client);
    return session;
  }));
  const failed = results.find((r): r is PromiseRejectedResult => r.status === "rejected");
  if (failed) {
    await closeSessions(opened);
    throw failed.reason;
  }
  // Deploy order: the session of authdb's server first.
  return DATABASES.flatMap((db) => opened.filter((s) => s.targets[0].db === db));
}

/** Checks the server behind a fresh lock session and names the session after the run. */
async function prepareSession(session: ServerSession, client: Client): Promise<void> {
  const first = session.targets[0];
  client.on("error", () => (session.lost = true));
  client.on("end", () => (session.lost = true));
  try {
    // Checked first, with plain SELECTs only: nothing may be SET through a pooler.
    await checkNotPooled(client, first);
    await checkPrimary(client, first);
    const { rows } = await client.query<{ v: string; n: number }>(`SELECT current_setting('server_version') AS v, current_setting('server_version_num')::int AS n`);
    session.serverVersion = rows[0].v;
    session.serverMajor = Math.floor(rows[0].n / 10000);
    // Named, so other runs can tell whose lock they wait for. The session sits idle while the
    // deploy works: a server-wide idle_session_timeout (PG 14+) must not end it, or a second run could get in.
    await client.query(`SELECT set_config('application_name', $1, false)`, [applicationName(session.runId)]);
    await client.query(`SELECT set_config('idle_session_timeout', '0', false)`).catch(() => undefined);
    // A lost host: the server notices within a minute and releases the locks.
    await client.query(`SELECT set_config('tcp_keepalives_idle', '30', false), set_config('tcp_keepalives_interval', '10', false), set_config('tcp_keepalives_count', '3', false)`).catch(() => undefined);
  } catch (error) {
    throw describeError(error, first);
  }
}

/** Thrown when a run reconnects and finds another run holding a lock it had: it must stop. */
export class LockTakenError extends MigrationError {}

/**
 * After the session's connection was lost (server restart, failover): a fresh connection to the
 * same server, the same locks taken again at once. If another run holds one meanwhile, throws
 * LockTakenError; a server still away throws its connection error (the caller retries).
 */
export async function reopenSession(session: ServerSession, config: Config): Promise<void> {
  const first = session.targets[0];
  const client = await connectClient(first, config.connectTimeoutMs, config.lockDatabase, null);
  try {
    await prepareSession(session, client);
    for (const database of session.locked) {
      const target = session.targets.find((t) => t.database === database) ?? first;
      const { rows } = await client.query(`SELECT pg_try_advisory_lock($1::int, $2::int) AS locked`, [LOCK_KEY, lockKeyOf(database)]);
      if (!rows[0].locked) {
        const holder = await holderOf(client, database);
        throw new LockTakenError(`${holder?.runId ? `run ${holder.runId}` : "another session"} took the deploy lock while this run was reconnecting`, target.db);
      }
    }
  } catch (error) {
    await client.end().catch(() => undefined);
    throw error;
  }
  const old = session.client;
  session.client = client;
  session.lost = false;
  old.removeAllListeners();
  old.on("error", () => undefined);
  await old.end().catch(() => undefined);
}

/** Whether the session's connection still answers (a restart may not have been noticed yet). */
export async function sessionAlive(session: ServerSession): Promise<boolean> {
  if (session.lost) return false;
  try {
    await session.client.query("SELECT 1");
    return true;
  } catch {
    session.lost = true;
    return false;
  }
}

async function holderOf(client: Client, database: string): Promise<LockHolder | undefined> {
  const { rows } = await client.query<{ pid: number; application_name: string | null; backend_start: Date | null }>(
    `SELECT l.pid, a.application_name, a.backend_start FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid
     WHERE l.locktype = 'advisory' AND l.granted AND l.classid = $1::int::oid AND l.objid = $2::int::oid AND l.objsubid = 2
       AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
     LIMIT 1`,
    [LOCK_KEY, lockKeyOf(database)],
  ).catch(() => ({ rows: [] as Array<{ pid: number; application_name: string | null; backend_start: Date | null }> }));
  const row = rows[0];
  if (!row) return undefined;
  const runId = /run (\S+)$/.exec(row.application_name ?? "")?.[1];
  return { pid: row.pid, runId, since: row.backend_start ?? undefined, application: row.application_name ?? undefined };
}

/** Takes the lock of `target` on `client` (a session on its server), waiting up to `timeoutMs`. */
export async function acquireLock(client: Client, target: DbTarget, timeoutMs: number, onWait?: LockWait): Promise<void> {
  const key = lockKeyOf(target.database);
  const deadline = Date.now() + timeoutMs;
  let told = false;
  for (;;) {
    const { rows } = await client.query(`SELECT pg_try_advisory_lock($1::int, $2::int) AS locked`, [LOCK_KEY, key]);
    if (rows[0].locked) return;
    if (!told) {
      told = true;
      onWait?.({ db: target.db, holder: await holderOf(client, target.database), waitMs: timeoutMs });
    }
    if (Date.now() >= deadline) {
      const holder = await holderOf(client, target.database);
      const who = holder?.runId ? `run ${holder.runId}` : "another migration run";
      throw new MigrationError(`${who} holds the deploy lock; gave up after ${Math.round(timeoutMs / 1000)} s (MIGRATION_LOCK_WAIT_MS)`, target.db);
    }
    await new Promise((r) => setTimeout(r, Math.min(200, Math.max(0, deadline - Date.now()))));
  }
}

export async function releaseLock(client: Client, database: string): Promise<void> {
  await client.query(`SELECT pg_advisory_unlock($1::int, $2::int)`, [LOCK_KEY, lockKeyOf(database)]).catch(() => undefined);
}

/** Locks every target of every session, in deploy order. */
export async function lockSessions(sessions: ServerSession[], timeoutMs: number, onWait?: LockWait): Promise<void> {
  const all = sessions.flatMap((s) => s.targets.map((t) => ({ s, t })));
  for (const db of DATABASES) {
    for (const { s, t } of all.filter((x) => x.t.db === db)) {
      await acquireLock(s.client, t, timeoutMs, onWait);
      s.locked.push(t.database);
    }
  }
}

/** Which of the session's databases exist now (read under the lock, so no other run creates one meanwhile). */
export async function existingDatabases(session: ServerSession): Promise<Set<string>> {
  const names = session.targets.map((t) => t.database);
  const { rows } = await session.client.query<{ datname: string }>(`SELECT datname FROM pg_database WHERE datname = ANY($1)`, [names]);
  return new Set(rows.map((r) => r.datname));
}

/**
 * Waits (briefly) until the run's other connections on this server are gone: a closed connection's
 * backend exits a moment after the client is done with it. So the next run starts only when this
 * one is down to its lock session, and the connection budget holds at every instant.
 */
async function drained(s: ServerSession, timeoutMs = 2_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const { rows } = await s.client.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND application_name LIKE $1`, [`ai-micro-migrations run ${s.runId}%`],
    ).catch(() => ({ rows: [{ n: 0 }] }));
    if (rows[0].n === 0) return;
    await new Promise((r) => setTimeout(r, 10));
  }
}

/**
 * Ends what runs that died left on the locked databases: their pg_dump, a statement the server has
 * not noticed is orphaned. Under the lock no live run works there, so any connection of another
 * run is a leftover; it would hold locks the new run needs.
 */
export async function endLeftovers(session: ServerSession): Promise<void> {
  await session.client.query(
    `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
      WHERE datname = ANY($1) AND application_name LIKE 'ai-micro-migrations run %' AND application_name NOT LIKE $2`,
    [session.locked, `ai-micro-migrations run ${session.runId}%`],
  ).catch(() => undefined);
}

/** Releases the locks and ends the sessions. */
export async function closeSessions(sessions: ServerSession[]): Promise<void> {
  await Promise.all(sessions.map(async (s) => {
    if (s.locked.length) await drained(s);
    for (const database of [...s.locked].reverse()) await releaseLock(s.client, database);
    s.locked = [];
    await s.client.end().catch(() => undefined);
  }));
}

/** Runs `body` holding the deploy locks of `dbs`. */
export async function withLocks<T>(
  config: Config, dbs: DbName[], options: { timeoutMs: number; runId: string; onWait?: LockWait },
  body: (sessions: ServerSession[]) => Promise<T>,
): Promise<T> {
  const sessions = await openSessions(config, dbs, options.runId);
  try {
    await lockSessions(sessions, options.timeoutMs, options.onWait);
    await Promise.all(sessions.map(endLeftovers));
    return await body(sessions);
  } finally {
    await closeSessions(sessions);
  }
}
