// The deploy lock: one session-level advisory lock per database, held on its own connection (so a
// crashed deploy releases it when its connection dies), waited on by polling up to a timeout, and
// taken for several databases in the fixed order authdb, apidb, admindb (so two runs cannot
// deadlock), released on every path.
import type { Client } from "pg";
import type { Config } from "../config";
import { connectClient } from "../postgres/connect";
import { DATABASES, DbName } from "../databases";
import { MigrationError } from "../errors";

/** A fixed key, the same in every copy of this tool, so all runs contend for one lock per database. */
export const LOCK_KEY = 1_739_416_052;

export async function acquireLock(client: Client, db: DbName, timeoutMs: number): Promise<void> {
  // The lock session sits idle while the deploy works: a server-wide idle_session_timeout (PG 14+)
  // must not end it, or a second deploy could get in.
  await client.query(`SELECT set_config('idle_session_timeout', '0', false)`).catch(() => undefined);
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { rows } = await client.query(`SELECT pg_try_advisory_lock($1) AS locked`, [LOCK_KEY]);
    if (rows[0].locked) return;
    if (Date.now() >= deadline) {
      throw new MigrationError(`another migration run holds the lock; gave up after ${Math.round(timeoutMs / 1000)} s (MIGRATION_LOCK_WAIT_MS)`, db);
    }
    await new Promise((r) => setTimeout(r, Math.min(200, Math.max(0, deadline - Date.now()))));
  }
}

export async function releaseLock(client: Client): Promise<void> {
  await client.query(`SELECT pg_advisory_unlock($1)`, [LOCK_KEY]).catch(() => undefined);
}

export async function withLocks<T>(config: Config, dbs: DbName[], timeoutMs: number, body: () => Promise<T>): Promise<T> {
  const held: Client[] = [];
  try {
    for (const db of DATABASES.filter((d) => dbs.includes(d))) {
      const client = await connectClient(config.targets[db], config.connectTimeoutMs);
      held.push(client);
      await acquireLock(client, db, timeoutMs);
    }
    return await body();
  } finally {
    for (const client of held.reverse()) {
      await releaseLock(client);
      await client.end().catch(() => undefined);
    }
  }
}
