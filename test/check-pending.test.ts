// migration:check right before a deploy: pending migrations are listed, not drift; entity drift is
// measured against the schema the database will have once they ran (replayed in the shadow database).
import * as fs from "fs";
import { Column } from "typeorm";
import { checkDatabases, DbCheck } from "../src/commands/check";
import { loadConfig, MIGRATIONS_ROOT } from "../src/config";
import { DATABASES } from "../src/databases";
import { Profile } from "../src/entities/apidb";
import { openDataSource } from "../src/postgres/connect";
import { loadMigrationFiles } from "../src/runner/migration-files";
import { schemaDiff } from "../src/schema/diff";
import { runCli } from "./support/cli";
import { serverUrl, testDatabases, TestDatabases, withClient } from "./support/databases";
import { copyMigrations, MigrationsCopy } from "./support/migrations-dir";

const INIT = "Init1795519558038";
const NORMALIZE = "NormalizeRolesDefault1795519600000";

const clean = (db: DbCheck["db"], pending: string[] = []): DbCheck => ({ db, pending, entityDrift: [], historyDrift: [], schemaDrift: [], managedByMigrations: [] });

/** Databases of `dbs` on the server (the real ones, and any shadow left behind). */
async function databasesOf(dbs: TestDatabases): Promise<string[]> {
  return withClient("postgres", async (c) =>
    (await c.query(`SELECT datname FROM pg_database WHERE datname LIKE ANY($1) ORDER BY 1`, [DATABASES.map((db) => `${dbs.names[db]}%`)])).rows.map((r) => r.datname));
}

/** For a describe block: the three databases migrated from a private copy of the migrations, `--to` a name. */
function migratedTo(label: string, to?: string) {
  const dbs = testDatabases(label);
  let copy: MigrationsCopy;
  const env = () => ({ ...dbs.env, MIGRATIONS_DIR: copy.root });
  beforeAll(async () => {
    copy = copyMigrations();
    const r = await runCli(["migration:run", ...(to ? ["--to", to] : [])], env());
    if (r.code !== 0) throw new Error(`setup migration:run failed: ${r.stderr}`);
  });
  afterAll(async () => {
    copy?.remove();
    await dbs.drop();
  });
  return { dbs, env, config: () => loadConfig(env()), copy: () => copy };
}

describe("pending migrations right before a deploy", () => {
  const { dbs, env, config, copy } = migratedTo("pending", INIT);

  it("a pending migration that brings the schema to the entities: listed as pending, no drift, exit 0", async () => {
    // What made the old check fail: the live authdb differs from its entities until NormalizeRolesDefault runs.
    const live = await openDataSource(config().targets.authdb, 5000);
    try {
      expect((await schemaDiff(live)).up.length).toBeGreaterThan(0);
    } finally {
      await live.destroy();
    }

    const r = await runCli(["migration:check"], env());
    expect(r.stderr).toBe("");
    expect(r.stdout).toContain(`authdb: pending ${NORMALIZE}\napidb: ok\nadmindb: ok\nno drift (1 pending: run npm run migration:run)\n`);
    expect(r.code).toBe(0);

    const json = await runCli(["migration:check", "--json"], env());
    expect(json.code).toBe(0);
    expect(JSON.parse(json.stdout)).toEqual({ command: "check", ok: true, databases: [clean("authdb", [NORMALIZE]), clean("apidb"), clean("admindb")] });
    // One shadow per database, dropped after; the live databases untouched.
    expect(await databasesOf(dbs)).toEqual(Object.values(dbs.names).sort());
  });

  it("failOnPending (--fail-on-pending): the same state is not ok, and still no drift", async () => {
    const report = await checkDatabases(config(), [...DATABASES], { failOnPending: true });
    expect(report.ok).toBe(false);
    expect(report.databases).toEqual([clean("authdb", [NORMALIZE]), clean("apidb"), clean("admindb")]);
    // Nothing pending in apidb: ok with the option too.
    expect((await checkDatabases(config(), ["apidb"], { failOnPending: true })).ok).toBe(true);
  });

  it("a pending migration that does not bring the schema to the entities is entity drift; exit 1", async () => {
    const file = copy().add("apidb", "AddNickname", 1795800000001, `ALTER TABLE profiles ADD COLUMN nickname text`, `ALTER TABLE profiles DROP COLUMN nickname`);
    try {
      const json = await runCli(["migration:check", "--json"], env());
      expect(json.stderr).toBe("");
      expect(json.code).toBe(1);
      const report = JSON.parse(json.stdout);
      expect(report.ok).toBe(false);
      expect(report.databases).toEqual([
        clean("authdb", [NORMALIZE]),
        { ...clean("apidb", ["AddNickname1795800000001"]), entityDrift: [`ALTER TABLE "profiles" DROP COLUMN "nickname"`] },
        clean("admindb"),
      ]);

      const text = await runCli(["migration:check", "--db", "apidb"], env());
      expect(text.code).toBe(1);
      expect(text.stdout).toContain([
        "apidb: pending AddNickname1795800000001",
        "apidb: entities differ from the schema its pending migrations build; after migration:run, migration:generate would write:",
        `  ALTER TABLE "profiles" DROP COLUMN "nickname";`,
        "drift found",
      ].join("\n"));
      // Replayed in the shadow only.
      const columns = await withClient(dbs.names.apidb, async (c) => (await c.query(`SELECT column_name FROM information_schema.columns WHERE table_name = 'profiles'`)).rows.map((r) => r.column_name));
      expect(columns).not.toContain("nickname");
    } finally {
      fs.rmSync(file);
    }
  });

  it("a hand-made change to the live database is still schema drift while migrations are pending", async () => {
    await withClient(dbs.names.authdb, (c) => c.query(`ALTER TABLE users ADD COLUMN hand_made text`));
    try {
      const report = await checkDatabases(config(), ["authdb"]);
      expect(report.ok).toBe(false);
      expect(report.databases).toEqual([{ ...clean("authdb", [NORMALIZE]), schemaDrift: ["column users.hand_made unexpected"] }]);
      const r = await runCli(["migration:check", "--db", "authdb"], env());
      expect(r.code).toBe(1);
      expect(r.stdout).toContain(`authdb: column users.hand_made unexpected\nauthdb: pending ${NORMALIZE}\ndrift found`);
    } finally {
      await withClient(dbs.names.authdb, (c) => c.query(`ALTER TABLE users DROP COLUMN hand_made`));
    }
  });

  it("in a given scratch database (--shadow-url): the same findings, and it is left empty", async () => {
    const scratch = `${dbs.names.authdb}_scratch`; // dropped with the test databases
    await withClient("postgres", (c) => c.query(`CREATE DATABASE "${scratch}"`));
    const report = await checkDatabases(config(), [...DATABASES], { shadowUrl: serverUrl(scratch) });
    expect(report).toEqual({ command: "check", ok: true, databases: [clean("authdb", [NORMALIZE]), clean("apidb"), clean("admindb")] });
    const left = await withClient(scratch, async (c) => ({
      tables: (await c.query(`SELECT tablename FROM pg_tables WHERE schemaname = 'public'`)).rows,
      extensions: (await c.query(`SELECT extname FROM pg_extension ORDER BY 1`)).rows.map((r) => r.extname),
    }));
    expect(left).toEqual({ tables: [], extensions: ["plpgsql"] });
  });

  it("once migration:run ran, nothing is pending and the check is clean", async () => {
    expect((await runCli(["migration:run", "--no-backup"], env())).code).toBe(0);
    const r = await runCli(["migration:check"], env());
    expect(r.stdout).toContain("authdb: ok\napidb: ok\nadmindb: ok\nno drift\n");
    expect(r.code).toBe(0);
    expect((await checkDatabases(config(), [...DATABASES], { failOnPending: true })).ok).toBe(true);
  });
});

describe("a database that does not exist yet", () => {
  const dbs = testDatabases("absent");
  afterAll(() => dbs.drop());
  const all = (db: DbCheck["db"]) => loadMigrationFiles(MIGRATIONS_ROOT, db).map((f) => f.name);

  it("everything is pending (migration:run creates it), no drift, exit 0; nothing is created", async () => {
    const json = await runCli(["migration:check", "--json"], dbs.env);
    expect(json.stderr).toBe("");
    expect(json.code).toBe(0);
    expect(JSON.parse(json.stdout)).toEqual({ command: "check", ok: true, databases: DATABASES.map((db) => clean(db, all(db))) });
    expect(all("authdb")).toEqual([INIT, NORMALIZE]);

    const text = await runCli(["migration:check", "--db", "apidb"], dbs.env);
    expect(text.stdout).toContain(`apidb: pending ${INIT}\nno drift (1 pending: run npm run migration:run)\n`);
    expect(text.code).toBe(0);

    const strict = await checkDatabases(dbs.config, [...DATABASES], { failOnPending: true });
    expect(strict.ok).toBe(false);
    expect(strict.databases).toEqual(DATABASES.map((db) => clean(db, all(db))));
    expect(await databasesOf(dbs)).toEqual([]);
  });
});

// Edits the Profile entity for the rest of this file (jest gives each test file its own entities): keep it last.
describe("an edited entity whose generated migration is not run yet", () => {
  const { config, copy } = migratedTo("pending_entity");
  const birthDate = `ALTER TABLE "profiles" ADD "birth_date" date`;

  it("is entity drift without the migration, and pending (no drift) with it", async () => {
    Column("date", { name: "birth_date", nullable: true })(Profile.prototype, "birthDate");
    const without = await checkDatabases(config(), ["apidb"]);
    expect(without.ok).toBe(false);
    expect(without.databases).toEqual([{ ...clean("apidb"), entityDrift: [birthDate] }]);

    copy().add("apidb", "AddBirthDate", 1795606683139, birthDate, `ALTER TABLE "profiles" DROP COLUMN "birth_date"`);
    const pending = await checkDatabases(config(), ["apidb"]);
    expect(pending).toEqual({ command: "check", ok: true, databases: [clean("apidb", ["AddBirthDate1795606683139"])] });
    expect((await checkDatabases(config(), ["apidb"], { failOnPending: true })).ok).toBe(false);
  });
});

describe("migration:check on the command line", () => {
  const dbs = testDatabases("checkcli");
  afterAll(() => dbs.drop());

  it("exit 0 listing what is pending; --fail-on-pending makes it exit 1", async () => {
    expect((await runCli(["migration:run", "--to", "Init"], dbs.env)).code).toBe(0);
    const r = await runCli(["migration:check"], dbs.env);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("authdb: pending NormalizeRolesDefault1795519600000");
    expect(r.stdout).toContain("no drift (1 pending: run npm run migration:run)");
    const strict = await runCli(["migration:check", "--fail-on-pending"], dbs.env);
    expect(strict.code).toBe(1);
    expect(strict.stdout).toContain("no drift, but 1 pending (--fail-on-pending): run npm run migration:run");
  });
});
