// The migrations build exactly the legacy schema, TypeORM sees no difference from the entities,
// and down-to-base then up again lands on the same schema.
import { Client } from "pg";
import { readCatalog, diffCatalogs, Catalog } from "../src/schema/catalog";
import { runMigrations } from "../src/commands/run";
import { revertMigrations } from "../src/commands/revert";
import { baselineDatabases } from "../src/commands/baseline";
import { openDataSource } from "../src/postgres/connect";
import { DATABASES, DbName } from "../src/databases";
import { DEFAULT_TIMEOUTS } from "../src/runner/migrator";
import { schemaDiff } from "../src/schema/diff";
import { ensureBookkeeping } from "../src/runner/history";
import { loadMigrationFiles } from "../src/runner/migration-files";
import { applyMigration } from "../src/runner/migrator";
import { buildLegacy, createAll, testDatabases, TestDatabases, withClient } from "./support/databases";

const options = { timeouts: DEFAULT_TIMEOUTS, lockTimeoutMs: 10_000, backup: false };

async function catalogs(dbs: TestDatabases): Promise<Record<DbName, Catalog>> {
  const out = {} as Record<DbName, Catalog>;
  for (const db of DATABASES) out[db] = await withClient(dbs.names[db], (c) => readCatalog(c));
  return out;
}

/** The legacy default rows: settings and LangChain collections, as text. */
async function defaultRows(database: string): Promise<string[]> {
  return withClient(database, async (c: Client) => {
    const settings = await c.query(`SELECT key, value::text FROM system_settings ORDER BY key`);
    const collections = await c.query(`SELECT name, cmetadata::text FROM langchain_pg_collection ORDER BY name`);
    return [...settings.rows, ...collections.rows].map((r) => JSON.stringify(r));
  });
}

describe("the migrations reproduce the legacy schema", () => {
  const legacy = testDatabases("legacy");
  const migrated = testDatabases("migrated");
  let expected: Record<DbName, Catalog>;

  beforeAll(async () => {
    await buildLegacy(legacy);
    expected = await catalogs(legacy);
    const report = await runMigrations(migrated.config, { dbs: [...DATABASES], ...options });
    expect(report.status).toBe("applied");
  });
  afterAll(async () => {
    await legacy.drop();
    await migrated.drop();
  });

  it("reads a non-trivial legacy catalog (guards the comparison itself)", () => {
    expect(Object.keys(expected.admindb.indexes)).toContain("idx_documents_tags");
    expect(expected.admindb.extensions).toEqual(expect.arrayContaining(["uuid-ossp", "vector"]));
    expect(Object.keys(expected.authdb.columns)).toHaveLength(10);
    expect(expected.admindb.constraints["documents.check_owner"]).toMatch(/CHECK/);
  });

  it.each(DATABASES)("%s: catalog identical to the legacy init.sql", async (db) => {
    const actual = (await catalogs(migrated))[db];
    expect(diffCatalogs(actual, expected[db])).toEqual([]);
  });

  it("reports a real difference (the comparison can fail)", async () => {
    await withClient(migrated.names.admindb, (c) => c.query(`DROP INDEX idx_documents_status`));
    const actual = (await catalogs(migrated)).admindb;
    expect(diffCatalogs(actual, expected.admindb)).toEqual(["index idx_documents_status missing"]);
    await withClient(migrated.names.admindb, (c) => c.query(`CREATE INDEX idx_documents_status ON documents (status)`));
    expect(diffCatalogs((await catalogs(migrated)).admindb, expected.admindb)).toEqual([]);
  });

  it("the admindb migrations insert exactly the legacy default rows", async () => {
    // Applied one by one without the deploy around them, which records its run in schema_version.
    const dbs = testDatabases("rows");
    await createAll(dbs);
    const ds = await openDataSource(dbs.config.targets.admindb, 5000);
    try {
      await ensureBookkeeping(ds);
      for (const file of loadMigrationFiles(dbs.config.migrationsDir, "admindb")) {
        await applyMigration(ds, file, "up", { runId: "test", command: "test", timeouts: DEFAULT_TIMEOUTS });
      }
      const rows = await defaultRows(dbs.names.admindb);
      expect(rows).toEqual(await defaultRows(legacy.names.admindb));
      expect(rows).toHaveLength(3);
    } finally {
      await ds.destroy();
      await dbs.drop();
    }
  });

  it("a deploy records its run in schema_version and leaves maintenance mode as it was", async () => {
    const [settings] = await withClient(migrated.names.admindb, async (c) =>
      (await c.query(`SELECT json_object_agg(key, value) AS s FROM system_settings`)).rows.map((r) => r.s));
    expect(settings.maintenance_mode).toEqual({ enabled: false, message: "" });
    expect(settings.schema_version).toEqual(expect.objectContaining({
      run_id: expect.stringMatching(/^\d{8}T\d{6}Z-[0-9a-f]{4}$/),
      migrations: { authdb: expect.stringMatching(/^NormalizeRolesDefault/), apidb: expect.stringMatching(/^Init/), admindb: expect.stringMatching(/^Init/) },
    }));
  });

  it.each(DATABASES)("%s: TypeORM finds no difference between entities and database", async (db) => {
    const ds = await openDataSource(migrated.config.targets[db], 5000);
    try {
      const diff = await schemaDiff(ds);
      expect(diff.up.map((q) => q.query)).toEqual([]);
    } finally {
      await ds.destroy();
    }
  });

  it.each(DATABASES)("%s: TypeORM finds no difference on a legacy database once migrated", async (db) => {
    // The legacy database as adopted: baselined, then the later migrations run.
    const adopted = testDatabases(`adopt_${db}`);
    await buildLegacy(adopted);
    try {
      const baseline = await baselineDatabases(adopted.config, [db], { lockTimeoutMs: 10_000 });
      expect(baseline.databases[0].status).toBe("baselined");
      await runMigrations(adopted.config, { dbs: [db], ...options });
      const ds2 = await openDataSource(adopted.config.targets[db], 5000);
      try {
        expect((await schemaDiff(ds2)).up.map((q) => q.query)).toEqual([]);
      } finally {
        await ds2.destroy();
      }
    } finally {
      await adopted.drop();
    }
  });
});

describe("down to base and up again", () => {
  const dbs = testDatabases("roundtrip");
  const legacy = testDatabases("legacy2");
  afterAll(async () => {
    await dbs.drop();
    await legacy.drop();
  });

  it.each(DATABASES)("%s: revert --to base leaves no schema table; run again gives the legacy schema", async (db) => {
    if (db === "authdb") {
      await buildLegacy(legacy);
      await runMigrations(dbs.config, { dbs: [...DATABASES], ...options });
    }
    const down = await revertMigrations(dbs.config, { target: { kind: "to", db, to: "base" }, ...options });
    expect(down.status).toBe("reverted");
    const left = await withClient(dbs.names[db], (c) => readCatalog(c));
    expect(left.tables).toEqual([]);
    expect(left.extensions).toEqual(["plpgsql"]);

    const up = await runMigrations(dbs.config, { dbs: [db], ...options });
    expect(up.status).toBe("applied");
    const again = await withClient(dbs.names[db], (c) => readCatalog(c));
    const want = await withClient(legacy.names[db], (c) => readCatalog(c));
    expect(diffCatalogs(again, want)).toEqual([]);
  });
});
