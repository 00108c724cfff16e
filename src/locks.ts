// Holding the deploy locks of several databases: taken in the fixed order authdb, apidb, admindb
// (so two runs cannot deadlock), released on every path.
import type { Client } from "pg";
import type { Config } from "./config";
import { connectClient } from "./connect";
import { DATABASES, DbName } from "./databases";
import { acquireLock, releaseLock } from "./lock";

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
