// What operators use around a deploy: the maintenance window by hand and kept through the rollout,
// --to by the name given to generate, the embedded cluster found and removed wherever it lives.
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { clusterDataDir, destroyClusterEverywhere, ensureCluster, isClusterRunning } from "../src/postgres/local-cluster";
import { runCli } from "./support/cli";
import { testDatabases, withClient } from "./support/databases";
import { migratedWithCopy } from "./support/migrations-dir";

const maintenanceValue = async (database: string) =>
  withClient(database, async (c) => (await c.query(`SELECT value FROM system_settings WHERE key = 'maintenance_mode'`)).rows[0].value);

describe("the maintenance window", () => {
  const dbs = testDatabases("window");
  beforeAll(async () => {
    expect((await runCli(["migration:run", "--to", "Init"], dbs.env)).code).toBe(0);
  });
  afterAll(() => dbs.drop());

  it("db:maintenance on, status, off: the value the services read", async () => {
    const on = await runCli(["db:maintenance", "on", "--message", "Upgrading, back at 10:30"], dbs.env);
    expect(on.stderr).toBe("");
    expect(on.code).toBe(0);
    expect(on.stdout).toContain('admindb: maintenance mode off -> ON ("Upgrading, back at 10:30")');
    expect(await maintenanceValue(dbs.names.admindb)).toEqual({ enabled: true, message: "Upgrading, back at 10:30" });
    const status = await runCli(["db:maintenance", "status", "--json"], dbs.env);
    expect(JSON.parse(status.stdout).after).toMatchObject({ enabled: true, message: "Upgrading, back at 10:30" });
    const off = await runCli(["db:maintenance", "off"], dbs.env);
    expect(off.code).toBe(0);
    expect(await maintenanceValue(dbs.names.admindb)).toEqual({ enabled: false, message: "" });
    const bad = await runCli(["db:maintenance", "sideways"], dbs.env);
    expect(bad.code).toBe(2);
    expect(bad.stderr.trim()).toBe('error: db:maintenance: expected on, off or status (got "sideways")');
  });

  it("a deploy that finds maintenance on by hand leaves it on; --keep-maintenance keeps it on after a deploy", async () => {
    await runCli(["db:maintenance", "on", "--message", "by hand"], dbs.env);
    const run = await runCli(["migration:run", "--to", "1795519600000-NormalizeRolesDefault.ts"], dbs.env);
    expect(run.code).toBe(0);
    expect(await maintenanceValue(dbs.names.admindb)).toEqual({ enabled: true, message: "by hand" });
    await runCli(["db:maintenance", "off"], dbs.env);

    // Nothing pending: the flag changes nothing. Revert one, then deploy it again keeping the window.
    expect((await runCli(["migration:revert", "--db", "authdb", "--to", "Init"], dbs.env)).code).toBe(0);
    const kept = await runCli(["migration:run", "--keep-maintenance"], dbs.env);
    expect(kept.code).toBe(0);
    expect(kept.stdout).toContain("maintenance mode is kept ON (--keep-maintenance)");
    expect(await maintenanceValue(dbs.names.admindb)).toMatchObject({ enabled: true });
    // A later run does not take it for a dead run's and switch it off.
    expect((await runCli(["migration:run"], dbs.env)).code).toBe(0);
    expect(await maintenanceValue(dbs.names.admindb)).toMatchObject({ enabled: true });
    await runCli(["db:maintenance", "off"], dbs.env);
  });

  it("--keep-maintenance keeps the message the operator set with db:maintenance on --message (the old manual's procedure)", async () => {
    expect((await runCli(["migration:revert", "--db", "authdb", "--to", "Init"], dbs.env)).code).toBe(0);
    expect((await runCli(["db:maintenance", "on", "--message", "Upgrading, back at 10:30"], dbs.env)).code).toBe(0);
    const kept = await runCli(["migration:run", "--keep-maintenance"], dbs.env);
    expect(kept.code).toBe(0);
    expect(kept.stdout).toContain("maintenance mode is kept ON (--keep-maintenance)");
    expect(await maintenanceValue(dbs.names.admindb)).toEqual({ enabled: true, message: "Upgrading, back at 10:30" });
    const status = JSON.parse((await runCli(["db:maintenance", "status", "--json"], dbs.env)).stdout);
    expect(status.after).toMatchObject({ enabled: true, message: "Upgrading, back at 10:30" });
    expect(status.after.run).toBeUndefined();
    expect((await runCli(["db:maintenance", "off"], dbs.env)).code).toBe(0);
    expect(await maintenanceValue(dbs.names.admindb)).toMatchObject({ enabled: false });
  });
});

describe("--to by the name given to generate", () => {
  const dbs = testDatabases("toname");
  afterAll(() => dbs.drop());

  it("takes the generate name, the class name and the file name; an unknown one lists the closest", async () => {
    const r = await runCli(["migration:run", "--to", "Init", "--json"], dbs.env);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout).databases.map((d: { pending: string[] }) => d.pending)).toEqual([["Init1795519558038"], ["Init1795519558038"], ["Init1795519558038"]]);
    const unknown = await runCli(["migration:run", "--to", "NormaliseRoles"], dbs.env);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr.trim()).toBe('error: unknown migration "NormaliseRoles" (closest: NormalizeRolesDefault1795519600000, Init1795519558038)');
    const byFile = await runCli(["migration:revert", "--db", "authdb", "--to", "src/migrations/authdb/1795519558038-Init.ts", "--dry-run"], dbs.env);
    expect(byFile.code).toBe(0);
  });
});

describe("the embedded cluster, wherever it lives", () => {
  it("db:destroy's core removes the cluster, also one whose server.json is gone", async () => {
    // A checkout under a 0700 directory, as `mktemp -d` makes: as root, the postgres user cannot
    // reach it, so the cluster's data goes under the postgres user's home (elsewhere: in .pgdata/).
    const parent = fs.mkdtempSync(path.join(os.tmpdir(), "aimig-checkout-"));
    const root = path.join(parent, ".pgdata");
    try {
      await ensureCluster(root, { fast: true });
      const dataDir = clusterDataDir(root);
      const outside = !dataDir.startsWith(parent);
      expect(outside).toBe(process.getuid?.() === 0);
      expect(isClusterRunning(root)).toBe(true);
      fs.rmSync(path.join(root, "server.json")); // the checkout's record is gone; the cluster is not
      const removed = destroyClusterEverywhere(root);
      expect(removed).toEqual(outside ? [root, path.dirname(dataDir)] : [root]);
      expect(fs.existsSync(dataDir)).toBe(false);
    } finally {
      fs.rmSync(parent, { recursive: true, force: true });
    }
  });
});

describe("settings that must not split or mix", () => {
  const dbs = testDatabases("nomix");
  afterAll(() => dbs.drop());

  it("the deploy lock lives in one database: one that cannot be reached is a one-line error, nothing created", async () => {
    const r = await runCli(["migration:run"], { ...dbs.env, MIGRATION_LOCK_DATABASE: "no_such_lock_db" });
    expect(r.code).toBe(1);
    expect(r.stderr.trim()).toBe('error: authdb: cannot open the deploy lock session on database "no_such_lock_db" (database "no_such_lock_db" does not exist): every migration role must be able to connect to it, or set MIGRATION_LOCK_DATABASE');
    const created = await withClient("postgres", async (c) => (await c.query(`SELECT 1 FROM pg_database WHERE datname = $1`, [dbs.names.authdb])).rowCount);
    expect(created).toBe(0);
  });

  it("--env takes every connection setting from one file: .env's APIDB_URL never mixes with .env.production's DATABASE_URL", async () => {
    const cwd = fs.mkdtempSync(path.join(os.tmpdir(), "aimig-mix-"));
    try {
      const prod = new URL(dbs.env.AUTHDB_URL);
      prod.pathname = "/postgres";
      fs.writeFileSync(path.join(cwd, ".env"), "APIDB_URL=postgres://dev:devpw@127.0.0.1:1/apidb_dev\nMIGRATION_CONNECT_TIMEOUT_MS=3000\n");
      fs.writeFileSync(path.join(cwd, ".env.production"), `DATABASE_URL=${prod}\nAPIDB_NAME=${dbs.names.apidb}\nAUTHDB_NAME=${dbs.names.authdb}\nADMINDB_NAME=${dbs.names.admindb}\n`);
      const r = await runCli(["migration:show", "--env", "production"], { MIGRATION_BACKUP_DIR: dbs.env.MIGRATION_BACKUP_DIR }, { cwd });
      expect(r.stderr).toBe("");
      expect(r.stdout.split("\n")[0]).toContain(`apidb=postgres@127.0.0.1:${prod.port}/${dbs.names.apidb}`);
    } finally {
      fs.rmSync(cwd, { recursive: true, force: true });
    }
  });
});

describe("--dry-run changes nothing", () => {
  const { dbs, copy, env } = migratedWithCopy("drymanager");

  it("not even through the query runner's EntityManager", async () => {
    copy().addCode("apidb", "ViaManager", 1795900000100, `await queryRunner.manager.query("CREATE TABLE via_manager (id int)");`, `await queryRunner.query("DROP TABLE via_manager");`);
    const r = await runCli(["migration:run", "--dry-run"], env());
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("CREATE TABLE via_manager (id int)");
    const exists = await withClient(dbs.names.apidb, async (c) => (await c.query(`SELECT to_regclass('via_manager') IS NOT NULL AS e`)).rows[0].e);
    expect(exists).toBe(false);
  });
});
