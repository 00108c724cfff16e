// What a migration target must be before anything runs against it: a primary (not a read-only
// standby), reached directly or through a session-pooling proxy, never through a transaction- or
// statement-pooling one (PgBouncer and the like): advisory locks, SET and pg_dump's session settings
// only mean something on a connection that stays on one server backend.
import { Client } from "pg";
import type { DbTarget } from "../config";
import { MigrationError } from "../errors";

/** The variable that holds a target's URL, for messages: AUTHDB_URL, DATABASE_URL, ... */
function urlVariable(target: DbTarget): string {
  return target.source === "embedded" ? "the embedded server" : target.source;
}

/** The DIRECT_URL variable that would bypass a pooler for this target. */
export function directUrlVariable(target: DbTarget): string {
  return target.source === "DATABASE_URL" ? "DATABASE_DIRECT_URL" : `${target.db.toUpperCase()}_DIRECT_URL`;
}

function where(target: DbTarget): string {
  const u = new URL(target.url);
  return `${u.hostname}:${u.port || 5432}`;
}

/** Refuses a server in recovery: migrations would fail half way with "read-only transaction". */
export async function checkPrimary(client: Client, target: DbTarget): Promise<void> {
  const { rows } = await client.query<{ standby: boolean }>(`SELECT pg_is_in_recovery() AS standby`);
  if (rows[0].standby) {
    throw new MigrationError(`${where(target)} is a read-only standby (in recovery): point ${urlVariable(target)} at the primary`, target.db);
  }
}

/**
 * Refuses a URL that goes through a transaction- or statement-pooling proxy. The test needs no
 * pooler-specific command: a second client opens a transaction right after `client`'s statement
 * ended. On a direct connection each client has its own backend; behind a transaction pooler the
 * second client is handed the server connection the first one just released (PgBouncer reuses the
 * most recently used one), so both see one backend pid, and the first client's next statement
 * lands on another. A statement pooler refuses the transaction. Only plain SELECTs run, so nothing
 * is left behind in a pooled connection.
 */
export async function checkNotPooled(client: Client, target: DbTarget, connect: () => Promise<Client>): Promise<void> {
  const pid = async (c: Client) => (await c.query<{ pid: number }>(`SELECT pg_backend_pid() AS pid`)).rows[0].pid;
  const first = await pid(client);
  const other = await connect();
  let pooled = false;
  try {
    try {
      await other.query("BEGIN");
      const second = await pid(other);
      const again = await pid(client);
      pooled = second === first || again !== first;
    } catch (error) {
      // PgBouncer in statement mode: "transaction blocks not allowed in statement pooling mode".
      if (!/pooling mode|not allowed/i.test((error as Error).message)) throw error;
      pooled = true;
    } finally {
      await other.query("ROLLBACK").catch(() => undefined);
    }
  } finally {
    await other.end().catch(() => undefined);
  }
  if (pooled) {
    throw new MigrationError(
      `${where(target)} is a transaction-pooling connection pooler (PgBouncer or alike), where locks and session settings do not hold: ` +
        `give the server itself in ${directUrlVariable(target)} (the applications keep ${urlVariable(target)})`,
      target.db,
    );
  }
}
