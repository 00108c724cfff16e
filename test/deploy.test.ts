// The deploy as production runs it: concurrent runs, a failure in the last database, a killed run,
// backups and restores, dry runs and JSON reports. Real PostgreSQL, real child processes.
import { spawn } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { DATABASES, DbName } from "../src/databases";
import { readApplied, readHistory } from "../src/runner/history";
import { readCatalog } from "../src/schema/catalog";
import { loadConfig } from "../src/config";
import { runMigrations } from "../src/commands/run";
import { DEFAULT_TIMEOUTS } from "../src/runner/migrator";
import { loadMigrationFiles } from "../src/runner/migration-files";
import { CLI, cliEnv, runCli } from "./support/cli";
import { testDatabases, TestDatabases, withClient } from "./support/databases";
import { copyMigrations, migratedWithCopy, MigrationsCopy } from "./support/migrations-dir";

const ROOT = path.resolve(__dirname, "..");
const shipped = (db: DbName) => loadMigrationFiles(path.join(ROOT, "src", "migrations"), db).map((f) => f.name);

async function maintenanceText(dbs: TestDatabases): Promise<string> {
  return withClient(dbs.names.admindb, async (c) => (await c.query(`SELECT value::text AS v FROM system_settings WHERE key = 'maintenance_mode'`)).rows[0].v);
}

async function tableExists(database: string, table: string): Promise<boolean> {
  return withClient(database, async (c) => (await c.query(`SELECT to_regclass($1) IS NOT NULL AS t`, [table])).rows[0].t);
}

/** Per table: row count and an md5 of all rows in a stable order. */
async function dataChecksums(database: string): Promise<Record<string, string>> {
  return withClient(database, async (c) => {
    const tables = (await c.query(`SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1`)).rows.map((r) => r.tablename as string);
    const out: Record<string, string> = {};
    for (const t of tables) {
      const { rows } = await c.query(`SELECT count(*)::int AS n, md5(coalesce(string_agg(x::text, '|' ORDER BY x::text), '')) AS h FROM "${t}" x`);
      out[t] = `${rows[0].n}:${rows[0].h}`;
    }
    return out;
  });
}

describe("concurrent deploys", () => {
  const dbs = testDatabases("concurrent");
  afterAll(() => dbs.drop());

  it("four runs at once on fresh databases: all exit 0, each migration applied once", async () => {
    const runs = await Promise.all([1, 2, 3, 4].map(() => runCli(["migration:run", "--json"], dbs.env)));
    for (const r of runs) {
      // A run that waits for another says so, and says nothing else.
      for (const line of r.stderr.split("\n").filter(Boolean)) expect(line).toMatch(/^\w+: waiting for the deploy lock held by run \S+ \(pid \d+, since .+\); up to 120 s/);
      expect(r.code).toBe(0);
    }
    const statuses = runs.map((r) => JSON.parse(r.stdout).status).sort();
    expect(statuses.filter((s) => s === "applied").length).toBeGreaterThanOrEqual(1);
    expect(statuses.every((s) => s === "applied" || s === "nothing-to-do")).toBe(true);
    for (const db of DATABASES) {
      const { applied, ups } = await withClient(dbs.names[db], async (c) => ({
        applied: (await readApplied(c)).map((a) => a.name),
        ups: (await readHistory(c)).filter((h) => h.direction === "up").map((h) => h.name),
      }));
      expect(applied).toEqual(shipped(db));
      expect(ups).toEqual(shipped(db)); // once each
    }
  });
});

describe("a failing migration in admindb", () => {
  const dbs = testDatabases("failing");
  let copy: MigrationsCopy;
  beforeAll(async () => {
    copy = copyMigrations();
    expect((await runCli(["migration:run"], { ...dbs.env, MIGRATIONS_DIR: copy.root })).code).toBe(0);
    await withClient(dbs.names.admindb, (c) => c.query(`UPDATE system_settings SET value = '{"enabled": false, "message": "kept as is"}' WHERE key = 'maintenance_mode'`));
  });
  afterAll(async () => {
    copy.remove();
    await dbs.drop();
  });

  it("reverts this run's migrations in authdb and apidb, leaves admindb unchanged, restores maintenance", async () => {
    copy.add("authdb", "AddAuthAudit", 1795700000001, `CREATE TABLE auth_audit (id int)`, `DROP TABLE auth_audit`);
    copy.add("apidb", "AddProfileNotes", 1795700000002, `CREATE TABLE profile_notes (id int)`, `DROP TABLE profile_notes`);
    copy.add("admindb", "BrokenBackfill", 1795700000003, `CREATE TABLE half_done (id int); SELECT 1 / 0`, `DROP TABLE half_done`);
    const before = { maintenance: await maintenanceText(dbs), admindb: await dataChecksums(dbs.names.admindb) };

    const r = await runCli(["migration:run"], { ...dbs.env, MIGRATIONS_DIR: copy.root });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("error: admindb: migration BrokenBackfill1795700000003 failed: division by zero");
    expect(r.stderr).toMatch(/apidb: undone AddProfileNotes1795700000002 \(down\)\nauthdb: undone AddAuthAudit1795700000001 \(down\)/);
    expect(r.stderr).toMatch(/to restore the backup taken before this run: npm run db:restore -- \d{8}T\d{6}Z-[0-9a-f]{4}/);

    expect(await tableExists(dbs.names.authdb, "auth_audit")).toBe(false);
    expect(await tableExists(dbs.names.apidb, "profile_notes")).toBe(false);
    expect(await tableExists(dbs.names.admindb, "half_done")).toBe(false);
    for (const db of DATABASES) expect((await withClient(dbs.names[db], readApplied)).map((a) => a.name)).toEqual(shipped(db));
    expect(await maintenanceText(dbs)).toBe(before.maintenance);
    expect(await dataChecksums(dbs.names.admindb)).toEqual(before.admindb);
  });
});

describe("a deploy killed in the middle of a migration", () => {
  const { dbs, copy: current } = migratedWithCopy("killed");
  let copy: MigrationsCopy;
  beforeAll(() => (copy = current()));

  it("leaves the database at its previous state; the next deploy completes", async () => {
    copy.addCode("apidb", "SlowAddColumn", 1795700000010,
      `await queryRunner.query("ALTER TABLE profiles ADD COLUMN nickname text");
        if (process.env.SLOW_MIGRATION) await queryRunner.query("SELECT pg_sleep(60)");`,
      `await queryRunner.query("ALTER TABLE profiles DROP COLUMN nickname");`);
    const maintenanceBefore = await maintenanceText(dbs);
    const child = spawn(process.execPath, [CLI, "migration:run"], {
      cwd: ROOT, env: cliEnv({ ...dbs.env, MIGRATIONS_DIR: copy.root, SLOW_MIGRATION: "1" }), stdio: "ignore",
    });
    const exited = new Promise((resolve) => child.on("exit", resolve));
    // Wait until the migration is inside its transaction, sleeping.
    const deadline = Date.now() + 30_000;
    for (;;) {
      const sleeping = await withClient("postgres", async (c) =>
        (await c.query(`SELECT 1 FROM pg_stat_activity WHERE datname = $1 AND query LIKE '%pg_sleep(60)%' AND state = 'active'`, [dbs.names.apidb])).rowCount);
      if (sleeping) break;
      if (Date.now() > deadline) throw new Error("the slow migration never started");
      await new Promise((r) => setTimeout(r, 100));
    }
    child.kill("SIGKILL");
    await exited;

    // The server drops the dead client's session within about a second, rolling its migration back.
    const until = Date.now() + 15_000;
    while (await withClient("postgres", async (c) => (await c.query(`SELECT 1 FROM pg_stat_activity WHERE datname = $1 AND application_name = 'ai-micro-migrations'`, [dbs.names.apidb])).rowCount)) {
      if (Date.now() > until) throw new Error("the killed run's session is still there");
      await new Promise((r) => setTimeout(r, 200));
    }
    const columns = await withClient(dbs.names.apidb, async (c) => (await c.query(`SELECT column_name FROM information_schema.columns WHERE table_name = 'profiles'`)).rows.map((r) => r.column_name));
    expect(columns).not.toContain("nickname");
    expect((await withClient(dbs.names.apidb, readApplied)).map((a) => a.name)).toEqual(shipped("apidb"));
    expect(JSON.parse(await maintenanceText(dbs))).toMatchObject({ enabled: true }); // the dead run's

    const next = await runCli(["migration:run"], { ...dbs.env, MIGRATIONS_DIR: copy.root });
    expect(next.stderr).toBe("");
    expect(next.code).toBe(0);
    expect(next.stdout).toMatch(/apidb: applied SlowAddColumn1795700000010/);
    expect(await maintenanceText(dbs)).toBe(maintenanceBefore); // repaired from what the dead run saved
  });
});

describe("backup and restore", () => {
  const dbs = testDatabases("backup");
  beforeAll(async () => {
    expect((await runCli(["migration:run"], dbs.env)).code).toBe(0);
    await withClient(dbs.names.authdb, (c) => c.query(`INSERT INTO users (email, password_hash) SELECT 'u' || g || '@x', 'h' FROM generate_series(1, 300) g`));
    await withClient(dbs.names.apidb, (c) => c.query(`INSERT INTO profiles (user_id, name) SELECT uuid_generate_v4(), 'n' || g FROM generate_series(1, 200) g`));
    await withClient(dbs.names.admindb, (c) => c.query(`
      INSERT INTO knowledge_bases (id, name, user_id) VALUES ('00000000-0000-0000-0000-000000000001', 'kb', uuid_generate_v4());
      INSERT INTO documents (knowledge_base_id, filename, original_filename, file_path, mime_type, file_size, tags)
        SELECT '00000000-0000-0000-0000-000000000001', 'f' || g, 'o', '/p', 'text/plain', g, ARRAY['t' || (g % 5)] FROM generate_series(1, 500) g;
      INSERT INTO langchain_pg_embedding (collection_id, embedding, document)
        SELECT (SELECT uuid FROM langchain_pg_collection LIMIT 1), array_fill(g::real / 100, ARRAY[768])::vector, 'd' FROM generate_series(1, 50) g;`));
  });
  afterAll(() => dbs.drop());

  it("db:backup writes verified 0600 archives and a manifest; db:restore brings back the same data", async () => {
    const before: Record<string, Record<string, string>> = {};
    for (const db of DATABASES) before[db] = await dataChecksums(dbs.names[db]);

    const b = await runCli(["db:backup", "--json"], dbs.env);
    expect(b.stderr).toBe("");
    expect(b.code).toBe(0);
    const report = JSON.parse(b.stdout);
    const dir = report.dir as string;
    expect(fs.statSync(dir).mode & 0o777).toBe(0o700);
    for (const f of fs.readdirSync(dir)) expect(fs.statSync(path.join(dir, f)).mode & 0o777).toBe(0o600);
    expect(fs.readdirSync(dir).sort()).toEqual(["admindb.dump", "apidb.dump", "authdb.dump", "manifest.json"]);
    const manifest = JSON.parse(fs.readFileSync(path.join(dir, "manifest.json"), "utf8"));
    expect(manifest.databases[2]).toEqual(expect.objectContaining({ db: "admindb", sha256: expect.stringMatching(/^[0-9a-f]{64}$/), serverVersion: expect.stringMatching(/^\d+/), applied: shipped("admindb") }));
    expect(fs.readdirSync(dir).join(" ")).not.toMatch(/pass|secret/i);

    // Damage the data, then restore every database under its own name.
    await withClient(dbs.names.admindb, (c) => c.query(`DELETE FROM documents WHERE file_size % 2 = 0`));
    await withClient(dbs.names.authdb, (c) => c.query(`DELETE FROM users`));
    // A service still connected to admindb, reconnecting as soon as it is dropped.
    const service = { stop: false, connections: 0 };
    const reconnecting = (async () => {
      while (!service.stop) {
        await withClient(dbs.names.admindb, async (c) => {
          service.connections++;
          await c.query(`SELECT pg_sleep(0.05)`);
        }).catch(() => undefined);
      }
    })();
    const r = await runCli(["db:restore", report.runId], dbs.env);
    service.stop = true;
    await reconnecting;
    expect(service.connections).toBeGreaterThan(1);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/admindb: the previous database is kept as admindb_backup_\w+_replaced_\d{14}/);
    for (const db of DATABASES) expect(await dataChecksums(dbs.names[db])).toEqual(before[db]);

    // And one database into a new name.
    const into = `${dbs.names.admindb}_copy`;
    const r2 = await runCli(["db:restore", report.runId, "--db", "admindb", "--into", into], dbs.env);
    expect(r2.code).toBe(0);
    expect(await dataChecksums(into)).toEqual(before.admindb);
  });

  it("refuses a backup whose archive was altered", async () => {
    const b = JSON.parse((await runCli(["db:backup", "--db", "apidb", "--json"], dbs.env)).stdout);
    fs.appendFileSync(path.join(b.dir, "apidb.dump"), "x");
    const r = await runCli(["db:restore", b.runId], dbs.env);
    expect(r.code).toBe(1);
    expect(r.stderr.trim()).toBe("error: apidb: backup file apidb.dump does not match its manifest checksum: refusing to restore it");
  });

  it("a deploy backs up first and keeps MIGRATION_BACKUP_KEEP runs per database", async () => {
    const copy = copyMigrations();
    try {
      copy.add("apidb", "AddNickname", 1795700000020, `ALTER TABLE profiles ADD COLUMN nickname text`, `ALTER TABLE profiles DROP COLUMN nickname`);
      const r = await runCli(["migration:run", "--json"], { ...dbs.env, MIGRATIONS_DIR: copy.root, MIGRATION_BACKUP_KEEP: "1" });
      expect(r.code).toBe(0);
      const report = JSON.parse(r.stdout);
      expect(report.backup.manifest.databases.map((d: { db: string }) => d.db)).toEqual(["apidb"]);
      expect(report.backup.manifest.databases[0].applied).toEqual(shipped("apidb"));
      // The earlier db:backup run stays: it holds the newest backup of authdb and admindb.
      // Run ids of one second do not sort by time (a random suffix): the older one is the other one.
      const runs = fs.readdirSync(dbs.env.MIGRATION_BACKUP_DIR);
      expect(runs).toHaveLength(2);
      expect(runs).toContain(report.runId);
      const older = JSON.parse(fs.readFileSync(path.join(dbs.env.MIGRATION_BACKUP_DIR, runs.find((r) => r !== report.runId)!, "manifest.json"), "utf8"));
      expect(older.databases.map((d: { db: string }) => d.db)).toEqual(["authdb", "apidb", "admindb"]);
    } finally {
      copy.remove();
    }
  });
});

describe("bad input for the deploy", () => {
  const dbs = testDatabases("deploybad");
  let copy: MigrationsCopy;
  beforeAll(async () => {
    copy = copyMigrations();
    expect((await runCli(["migration:run"], dbs.env)).code).toBe(0);
    copy.add("authdb", "AddSessions", 1795700000030, `CREATE TABLE sessions (id int)`, `DROP TABLE sessions`);
  });
  afterAll(async () => {
    copy.remove();
    await dbs.drop();
  });

  it("unwritable backup directory: exit 1, one line naming it, nothing applied", async () => {
    const file = path.join(os.tmpdir(), `aimig-not-a-dir-${process.pid}`);
    fs.writeFileSync(file, "");
    try {
      const r = await runCli(["migration:run"], { ...dbs.env, MIGRATIONS_DIR: copy.root, MIGRATION_BACKUP_DIR: path.join(file, "backups") });
      expect(r.code).toBe(1);
      expect(r.stderr.trim().split("\n")).toEqual([`error: authdb: backup directory ${path.join(file, "backups")} is not writable (ENOTDIR); set MIGRATION_BACKUP_DIR or use --no-backup`]);
      expect(await tableExists(dbs.names.authdb, "sessions")).toBe(false);
    } finally {
      fs.rmSync(file);
    }
  });

  it("--dry-run prints the SQL and changes nothing", async () => {
    const catalogs = () => Promise.all(DATABASES.map((db) => withClient(dbs.names[db], (c) => readCatalog(c))));
    const histories = () => Promise.all(DATABASES.map((db) => withClient(dbs.names[db], readHistory)));
    const before = { catalogs: await catalogs(), histories: await histories() };
    const r = await runCli(["migration:run", "--dry-run"], { ...dbs.env, MIGRATIONS_DIR: copy.root });
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("authdb: would apply 1\n  -- AddSessions1795700000030\n  CREATE TABLE sessions (id int);");
    expect(await tableExists(dbs.names.authdb, "sessions")).toBe(false);
    expect(fs.existsSync(dbs.env.MIGRATION_BACKUP_DIR)).toBe(false);
    expect({ catalogs: await catalogs(), histories: await histories() }).toEqual(before);

    const fresh = testDatabases("dryfresh");
    const r2 = await runCli(["migration:run", "--dry-run", "--json"], fresh.env);
    expect(r2.code).toBe(0);
    const report = JSON.parse(r2.stdout);
    expect(report.status).toBe("dry-run");
    expect(report.databases[2].sql[report.databases[2].pending[0]]).toEqual(expect.arrayContaining([`CREATE EXTENSION IF NOT EXISTS "vector"`]));
    const exists = await withClient("postgres", async (c) => (await c.query(`SELECT 1 FROM pg_database WHERE datname = $1`, [fresh.names.authdb])).rowCount);
    expect(exists).toBe(0);
  });

  it("--json reports the documented fields", async () => {
    const r = await runCli(["migration:run", "--json", "--no-backup"], { ...dbs.env, MIGRATIONS_DIR: copy.root });
    expect(r.code).toBe(0);
    expect(r.stderr).toContain("warning: --no-backup");
    const report = JSON.parse(r.stdout);
    expect(report).toEqual(expect.objectContaining({ command: "run", runId: expect.any(String), status: "applied", maintenance: "restored", backup: { skipped: true } }));
    expect(report.databases[0]).toEqual(expect.objectContaining({ db: "authdb", pending: ["AddSessions1795700000030"], applied: [expect.objectContaining({ name: "AddSessions1795700000030", direction: "up", durationMs: expect.any(Number) })] }));

    const revert = await runCli(["migration:revert", "--json"], { ...dbs.env, MIGRATIONS_DIR: copy.root });
    expect(revert.code).toBe(0);
    const undone = JSON.parse(revert.stdout);
    expect(undone).toEqual(expect.objectContaining({ command: "revert", status: "reverted", undoesRun: report.runId }));
    expect(undone.databases[0].reverted.map((s: { name: string }) => s.name)).toEqual(["AddSessions1795700000030"]);
    expect(await tableExists(dbs.names.authdb, "sessions")).toBe(false);
  });
});

describe("interrupting, transaction-less migrations and a failed undo", () => {
  const { dbs, copy: current } = migratedWithCopy("edge");
  let copy: MigrationsCopy;
  beforeAll(() => (copy = current()));

  it("Ctrl-C cancels the running migration, undoes the run, restores maintenance and releases the locks", async () => {
    copy.add("authdb", "AddTokens", 1795700000040, `CREATE TABLE tokens (id int)`, `DROP TABLE tokens`);
    copy.addCode("admindb", "SlowBackfill", 1795700000041,
      `await queryRunner.query("CREATE TABLE backfill (id int)"); await queryRunner.query("SELECT pg_sleep(60)");`,
      `await queryRunner.query("DROP TABLE backfill");`);
    const maintenanceBefore = await maintenanceText(dbs);
    const child = spawn(process.execPath, [CLI, "migration:run"], { cwd: ROOT, env: cliEnv({ ...dbs.env, MIGRATIONS_DIR: copy.root }), stdio: ["ignore", "pipe", "pipe"] });
    let stderr = "";
    child.stderr.on("data", (d) => (stderr += d));
    const exited = new Promise<number | null>((resolve) => child.on("exit", resolve));
    const deadline = Date.now() + 30_000;
    while (!(await withClient("postgres", async (c) => (await c.query(`SELECT 1 FROM pg_stat_activity WHERE datname = $1 AND query LIKE '%pg_sleep(60)%' AND state = 'active'`, [dbs.names.admindb])).rowCount))) {
      if (Date.now() > deadline) throw new Error("the slow migration never started");
      await new Promise((r) => setTimeout(r, 100));
    }
    const interrupted = Date.now();
    child.kill("SIGINT");
    expect(await exited).toBe(1);
    expect(Date.now() - interrupted).toBeLessThan(10_000);
    expect(stderr).toContain("error: admindb: migration SlowBackfill1795700000041 failed: interrupted (rolled back)");
    expect(stderr).toContain("authdb: undone AddTokens1795700000040 (down)");
    expect(await tableExists(dbs.names.authdb, "tokens")).toBe(false);
    expect(await tableExists(dbs.names.admindb, "backfill")).toBe(false);
    expect(await maintenanceText(dbs)).toBe(maintenanceBefore);
    fs.rmSync(path.join(copy.root, "admindb", "1795700000041-SlowBackfill.ts"));
    const next = await runCli(["migration:run"], { ...dbs.env, MIGRATIONS_DIR: copy.root, MIGRATION_LOCK_WAIT_MS: "2000" });
    expect(next.stderr).toBe("");
    expect(next.stdout).toMatch(/authdb: applied AddTokens1795700000040/);
  });

  it("a migration with transaction = false runs outside a transaction (CREATE INDEX CONCURRENTLY)", async () => {
    copy.addCode("admindb", "IndexConcurrently", 1795700000050,
      `await queryRunner.query("CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_documents_mime_type ON documents (mime_type)");`,
      `await queryRunner.query("DROP INDEX CONCURRENTLY IF EXISTS idx_documents_mime_type");`);
    const file = path.join(copy.root, "admindb", "1795700000050-IndexConcurrently.ts");
    fs.writeFileSync(file, fs.readFileSync(file, "utf8").replace("implements MigrationInterface {", "implements MigrationInterface {\n    transaction = false;"));
    const r = await runCli(["migration:run", "--db", "admindb"], { ...dbs.env, MIGRATIONS_DIR: copy.root });
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const valid = await withClient(dbs.names.admindb, async (c) => (await c.query(`SELECT indisvalid FROM pg_index WHERE indexrelid = 'idx_documents_mime_type'::regclass`)).rows[0].indisvalid);
    expect(valid).toBe(true);
    const back = await runCli(["migration:revert", "--db", "admindb", "--steps", "1"], { ...dbs.env, MIGRATIONS_DIR: copy.root });
    expect(back.code).toBe(0);
    expect(await tableExists(dbs.names.admindb, "idx_documents_mime_type")).toBe(false);
    fs.rmSync(file);
  });

  it("when undoing fails too, maintenance stays on and the report says so", async () => {
    copy.add("apidb", "AddBadges", 1795700000060, `CREATE TABLE badges (id int)`, `DROP TABLE no_such_table`);
    copy.add("admindb", "Broken", 1795700000061, `SELECT 1 / 0`);
    const r = await runCli(["migration:run"], { ...dbs.env, MIGRATIONS_DIR: copy.root });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("error: admindb: migration Broken1795700000061 failed: division by zero");
    expect(r.stderr).toContain(`error: apidb: undoing AddBadges1795700000060 failed: table "no_such_table" does not exist; the databases are NOT back where they were`);
    expect(r.stderr).toContain("maintenance mode is left ON");
    expect(JSON.parse(await maintenanceText(dbs))).toMatchObject({ enabled: true });
    // A later run with nothing to do does not take it for a dead run's and put it back.
    const later = await runCli(["migration:run", "--db", "authdb"], { ...dbs.env, MIGRATIONS_DIR: copy.root });
    expect(later.code).toBe(0);
    expect(JSON.parse(await maintenanceText(dbs))).toMatchObject({ enabled: true, undo_failed: true });
  });
});

describe("which run is undone, and --to across databases", () => {
  const { dbs, env, copy } = migratedWithCopy("lastrun");

  it("revert with no flags skips a failed run and undoes the last run that applied something", async () => {
    copy().add("authdb", "AddA", 1795900000001, `CREATE TABLE a (id int)`, `DROP TABLE a`);
    const r1 = await runCli(["migration:run", "--json"], env());
    expect(r1.code).toBe(0);
    const run1 = JSON.parse(r1.stdout).runId;
    copy().add("authdb", "AddB", 1795900000002, `CREATE TABLE b (id int)`, `DROP TABLE b`);
    copy().add("admindb", "Fails", 1795900000003, `SELECT 1 / 0`);
    expect((await runCli(["migration:run"], env())).code).toBe(1);
    fs.rmSync(path.join(copy().root, "admindb", "1795900000003-Fails.ts"));
    fs.rmSync(path.join(copy().root, "authdb", "1795900000002-AddB.ts"));

    const r = await runCli(["migration:revert", "--json"], env());
    expect(r.code).toBe(0);
    const report = JSON.parse(r.stdout);
    expect(report.undoesRun).toBe(run1);
    expect(report.databases[0].reverted.map((s: { name: string }) => s.name)).toEqual(["AddA1795900000001"]);
    expect(await tableExists(dbs.names.authdb, "a")).toBe(false);
  });

  it("--to <name> applies, in every database, everything up to that name's timestamp", async () => {
    // One generate run gives each database it touches a file of the same name.
    copy().add("authdb", "AddFlags", 1795900000010, `CREATE TABLE flags (id int)`, `DROP TABLE flags`);
    copy().add("apidb", "AddFlags", 1795900000010, `CREATE TABLE flags (id int)`, `DROP TABLE flags`);
    copy().add("authdb", "Later", 1795900000011, `CREATE TABLE later (id int)`, `DROP TABLE later`);
    const r = await runCli(["migration:run", "--to", "AddFlags1795900000010", "--db", "authdb", "--db", "apidb"], env());
    expect(r.code).toBe(0);
    expect(await tableExists(dbs.names.authdb, "flags")).toBe(true);
    expect(await tableExists(dbs.names.apidb, "flags")).toBe(true);
    expect(await tableExists(dbs.names.authdb, "later")).toBe(false);
    // A run that leaves admindb out still records itself in admindb's schema_version.
    const version = await withClient(dbs.names.admindb, async (c) => (await c.query(`SELECT value FROM system_settings WHERE key = 'schema_version'`)).rows[0].value);
    expect(version.migrations).toEqual(expect.objectContaining({ authdb: "AddFlags1795900000010", apidb: "AddFlags1795900000010", admindb: expect.stringMatching(/^Init/) }));
  });

  it("db:restore refuses an existing --into name and a file of another database (exit 2)", async () => {
    const b = JSON.parse((await runCli(["db:backup", "--db", "apidb", "--json"], env())).stdout);
    const into = await runCli(["db:restore", b.runId, "--db", "apidb", "--into", dbs.names.authdb], env());
    expect(into.code).toBe(2);
    expect(into.stderr.trim()).toBe(`error: apidb: database "${dbs.names.authdb}" already exists: --into takes a new name`);
    const mismatch = await runCli(["db:restore", path.join(b.dir, "apidb.dump"), "--db", "authdb"], env());
    expect(mismatch.code).toBe(2);
    expect(mismatch.stderr.trim()).toBe("error: authdb: the backup file is apidb's, not authdb's");
    const weird = await runCli(["db:restore", b.runId, "--db", "apidb", "--into", "dbname=x host=y"], env());
    expect(weird.code).toBe(2);
  });

  it("--shadow-url with a password in it is refused (process arguments are public)", async () => {
    const r = await runCli(["migration:check", "--shadow-url", "postgres://u:hunter2@127.0.0.1/scratch"], env());
    expect(r.code).toBe(2);
    expect(r.stderr.trim()).toMatch(/^error: --shadow-url must not carry a password/);
    expect(r.stderr).not.toContain("hunter2");
  });
});

describe("locks are released on every path (checked while the process that took them is alive)", () => {
  const { dbs, env, copy } = migratedWithCopy("locks");
  const advisoryLocks = () => withClient("postgres", async (c) =>
    (await c.query(`SELECT count(*)::int AS n FROM pg_locks l JOIN pg_database d ON d.oid = l.database WHERE l.locktype = 'advisory' AND d.datname = ANY($1)`, [Object.values(dbs.names)])).rows[0].n);

  it("after success, after a failure, and with nothing to do", async () => {
    const config = () => loadConfig(env());
    const options = { dbs: [...DATABASES], timeouts: DEFAULT_TIMEOUTS, lockTimeoutMs: 5000, backup: false };
    copy().add("apidb", "AddNotes", 1795950000001, `CREATE TABLE notes (id int)`, `DROP TABLE notes`);
    expect((await runMigrations(config(), options)).status).toBe("applied");
    expect(await advisoryLocks()).toBe(0);
    copy().add("admindb", "Boom", 1795950000002, `SELECT 1 / 0`);
    expect((await runMigrations(config(), options)).status).toBe("failed");
    expect(await advisoryLocks()).toBe(0);
    fs.rmSync(path.join(copy().root, "admindb", "1795950000002-Boom.ts"));
    expect((await runMigrations(config(), options)).status).toBe("nothing-to-do");
    expect(await advisoryLocks()).toBe(0);
  });
});
