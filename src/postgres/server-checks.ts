// What a migration target must be before anything runs against it: a primary (not a read-only
// standby), reached directly, never through a connection pooler (PgBouncer and the like): advisory
// locks, SET and pg_dump's session settings only mean something on a connection that stays on one
// server backend, and must never be left in a connection that the applications get next.
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
 * Refuses a URL that goes through a connection pooler (PgBouncer and the like). PostgreSQL tells a
 * client its backend's pid in the cancel key it sends at login; a pooler hands out cancel keys of
 * its own, since the client may be served by any server connection. So on a direct connection
 * (or through a plain TCP proxy, as docker's port mapping) the key's pid is the backend's, and
 * behind a pooler it is not. One plain SELECT: nothing is left behind in a pooled connection.
 */
export async function checkNotPooled(client: Client, target: DbTarget): Promise<void> {
  const { rows } = await client.query<{ pid: number }>(`SELECT pg_backend_pid() AS pid`);
  const keyPid = (client as unknown as { processID: number | null }).processID;
  if (keyPid !== rows[0].pid) {
    throw new MigrationError(
      `${where(target)} is a connection pooler (PgBouncer or alike), where locks and session settings do not hold: ` +
        `give the server itself in ${directUrlVariable(target)} (the applications keep ${urlVariable(target)})`,
      target.db,
    );
  }
}
