// Per-test databases: unique names on the shared test server, a Config pointing at them, the
// legacy init.sql replayed into them, and cleanup.
import * as crypto from "crypto";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { Client } from "pg";
import { Config, loadConfig } from "../../src/config";
import { DATABASES, DbName } from "../../src/databases";

export function serverUrl(database = "postgres"): string {
  const url = process.env.TEST_PG_URL;
  if (!url) throw new Error("TEST_PG_URL is not set: run the tests through jest (globalSetup starts the server)");
  const u = new URL(url);
  u.pathname = "/" + database;
  return u.toString();
}

export async function withClient<T>(database: string, body: (c: Client) => Promise<T>): Promise<T> {
  const client = new Client({ connectionString: serverUrl(database) });
  // A restore under test ends this session from the server; the query that was running says so.
  client.on("error", () => undefined);
  await client.connect();
  try {
    return await body(client);
  } finally {
    await client.end();
  }
}

export interface TestDatabases {
  names: Record<DbName, string>;
  /** Environment naming the three databases, as a deploy would set it. */
  env: Record<string, string>;
  config: Config;
  drop(): Promise<void>;
}

/** Three fresh database names (not created: the tool creates them, or `createAll` does). */
export function testDatabases(label: string): TestDatabases {
  const suffix = `${label}_${crypto.randomBytes(3).toString("hex")}`.toLowerCase().replace(/[^a-z0-9_]/g, "_");
  const names = {} as Record<DbName, string>;
  const env: Record<string, string> = {};
  for (const db of DATABASES) {
    names[db] = `${db}_${suffix}`;
    env[`${db.toUpperCase()}_URL`] = serverUrl(names[db]);
  }
  env.MIGRATION_CONNECT_TIMEOUT_MS = "5000";
  env.MIGRATION_BACKUP_DIR = path.join(os.tmpdir(), `aimig-backups-${suffix}`);
  return {
    names,
    env,
    config: loadConfig(env),
    drop: async () => {
      await withClient("postgres", async (c) => {
        for (const db of DATABASES) await c.query(`DROP DATABASE IF EXISTS "${names[db]}" WITH (FORCE)`);
        // Databases a restore replaced or staged (<name>_replaced_..., <name>_restoring_...).
        const { rows } = await c.query(`SELECT datname FROM pg_database WHERE datname LIKE ANY($1)`, [DATABASES.map((db) => `${names[db]}\\_%`)]);
        for (const r of rows) await c.query(`DROP DATABASE IF EXISTS "${r.datname}" WITH (FORCE)`);
      });
      fs.rmSync(env.MIGRATION_BACKUP_DIR, { recursive: true, force: true });
    },
  };
}

export async function createAll(dbs: TestDatabases): Promise<void> {
  await withClient("postgres", async (c) => {
    for (const db of DATABASES) await c.query(`CREATE DATABASE "${dbs.names[db]}"`);
  });
}

export const LEGACY_SQL = path.resolve(__dirname, "..", "fixtures", "legacy-init.sql");

/** The legacy init.sql cut into its per-database parts (`\c authdb` ... ), CREATE DATABASE removed. */
export function legacySections(): Record<DbName, string> {
  const sql = fs.readFileSync(LEGACY_SQL, "utf8").replace(/^CREATE DATABASE .*$/gm, "");
  const parts = sql.split(/^\\c (\w+)\s*$/m);
  const out = {} as Record<DbName, string>;
  for (let i = 1; i < parts.length; i += 2) out[parts[i] as DbName] = parts[i + 1];
  return out;
}

/** Builds the three databases exactly as the legacy init.sql does. */
export async function buildLegacy(dbs: TestDatabases): Promise<void> {
  await createAll(dbs);
  const sections = legacySections();
  for (const db of DATABASES) await withClient(dbs.names[db], (c) => c.query(sections[db]));
}
