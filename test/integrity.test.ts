// Checksums, drift and adoption of the databases already in the field (built by the legacy init.sql).
import * as fs from "fs";
import * as path from "path";
import { readApplied, readHistory } from "../src/runner/history";
import { DATABASES } from "../src/databases";
import { runCli } from "./support/cli";
import { buildLegacy, testDatabases, withClient } from "./support/databases";
import { copyMigrations, MigrationsCopy } from "./support/migrations-dir";

async function historyOf(database: string) {
  return withClient(database, async (c) => ({ applied: (await readApplied(c)).map((a) => a.name), history: await readHistory(c) }));
}

describe("edited and deleted applied migrations", () => {
  const dbs = testDatabases("checksum");
  let copy: MigrationsCopy;
  let file: string;
  beforeAll(async () => {
    copy = copyMigrations();
    file = copy.add("apidb", "AddNickname", 1795800000001, `ALTER TABLE profiles ADD COLUMN nickname text`, `ALTER TABLE profiles DROP COLUMN nickname`);
    expect((await runCli(["migration:run"], { ...dbs.env, MIGRATIONS_DIR: copy.root })).code).toBe(0);
  });
  afterAll(async () => {
    copy.remove();
    await dbs.drop();
  });
  const env = () => ({ ...dbs.env, MIGRATIONS_DIR: copy.root });

  it("an edited migration stops run and revert before anything changes; check exits 1; repair accepts it, on record", async () => {
    copy.add("authdb", "AddSessions", 1795800000002, `CREATE TABLE sessions (id int)`, `DROP TABLE sessions`);
    fs.appendFileSync(file, "// reworded comment\n");
    const before = await historyOf(dbs.names.apidb);

    const run = await runCli(["migration:run"], env());
    expect(run.code).toBe(1);
    expect(run.stderr.trim()).toBe(`error: apidb: applied migration ${path.relative(path.resolve(__dirname, ".."), file)} was edited after it was applied (checksum differs); undo the edit, or accept it with \`npm run migration:repair -- --db apidb\``);
    const revert = await runCli(["migration:revert", "--db", "apidb", "--steps", "1"], env());
    expect(revert.code).toBe(1);
    expect(revert.stderr).toContain("1795800000001-AddNickname.ts was edited after it was applied");
    expect(await historyOf(dbs.names.apidb)).toEqual(before);
    expect((await historyOf(dbs.names.authdb)).applied).not.toContain("AddSessions1795800000002");

    const check = await runCli(["migration:check", "--json"], env());
    expect(check.code).toBe(1);
    const report = JSON.parse(check.stdout);
    expect(report.ok).toBe(false);
    expect(report.databases[1].historyDrift).toEqual([expect.stringMatching(/1795800000001-AddNickname\.ts was edited after it was applied/)]);
    // A pending migration is listed, not drift (its table is one no entity maps: TypeORM leaves it be).
    expect(report.databases[0]).toEqual({ db: "authdb", pending: ["AddSessions1795800000002"], entityDrift: [], historyDrift: [], schemaDrift: [], managedByMigrations: [] });

    const show = await runCli(["migration:show"], env());
    expect(show.stdout).toContain("[x] AddNickname1795800000001  (EDITED since applied: checksum differs)");

    const repair = await runCli(["migration:repair", "--db", "apidb"], env());
    expect(repair.code).toBe(0);
    expect(repair.stdout).toMatch(/apidb: accepted the edit of .*AddNickname\.ts/);
    const after = await historyOf(dbs.names.apidb);
    expect(after.history[after.history.length - 1]).toEqual(expect.objectContaining({ name: "AddNickname1795800000001", direction: "repair" }));

    const again = await runCli(["migration:run"], env());
    expect(again.stderr).toBe("");
    expect(again.code).toBe(0);
    // History is clean now; what is left is the test migration's column, which no entity has.
    const final = JSON.parse((await runCli(["migration:check", "--json"], env())).stdout);
    expect(final.databases.map((d: { historyDrift: string[]; schemaDrift: string[] }) => [...d.historyDrift, ...d.schemaDrift])).toEqual([[], [], []]);
    expect(final.databases[1].entityDrift).toEqual([`ALTER TABLE "profiles" DROP COLUMN "nickname"`]);
  });

  it("an applied migration whose file is gone stops run and revert, and check reports it", async () => {
    const moved = `${file}.bak`;
    fs.renameSync(file, moved);
    try {
      const before = await historyOf(dbs.names.apidb);
      const run = await runCli(["migration:run"], env());
      expect(run.code).toBe(1);
      expect(run.stderr.trim()).toMatch(/^error: apidb: applied migration AddNickname1795800000001 has no file in .*apidb\/ \(restore it from version control\)$/);
      const revert = await runCli(["migration:revert"], env());
      expect(revert.code).toBe(1);
      expect(revert.stderr).toContain("applied migration AddNickname1795800000001 has no file");
      expect(await historyOf(dbs.names.apidb)).toEqual(before);
      const check = await runCli(["migration:check"], env());
      expect(check.code).toBe(1);
      expect(check.stdout).toContain("apidb: applied migration AddNickname1795800000001 has no file");
    } finally {
      fs.renameSync(moved, file);
    }
  });
});

describe("adopting legacy databases", () => {
  const dbs = testDatabases("adopt");
  beforeAll(async () => {
    await buildLegacy(dbs);
    await withClient(dbs.names.authdb, (c) => c.query(`INSERT INTO users (email, password_hash) SELECT 'u' || g || '@x', 'h' FROM generate_series(1, 50) g`));
    await withClient(dbs.names.apidb, (c) => c.query(`INSERT INTO profiles (user_id, name) SELECT uuid_generate_v4(), 'n' || g FROM generate_series(1, 40) g`));
    await withClient(dbs.names.admindb, (c) => c.query(`
      INSERT INTO knowledge_bases (id, name, user_id) VALUES ('00000000-0000-0000-0000-000000000007', 'kb', uuid_generate_v4());
      INSERT INTO documents (knowledge_base_id, filename, original_filename, file_path, mime_type, file_size)
        SELECT '00000000-0000-0000-0000-000000000007', 'f' || g, 'o', '/p', 'text/plain', g FROM generate_series(1, 30) g;
      INSERT INTO system_logs (service_name, level, message) VALUES ('api', 'info', 'hello');`));
  });
  afterAll(() => dbs.drop());

  const rowsOf = async () => {
    const out: Record<string, number> = {};
    for (const db of DATABASES) {
      await withClient(dbs.names[db], async (c) => {
        const tables = (await c.query(`SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename NOT LIKE 'migrations%'`)).rows;
        for (const t of tables) out[`${db}.${t.tablename}`] = (await c.query(`SELECT count(*)::int AS n FROM "${t.tablename}"`)).rows[0].n;
      });
    }
    return out;
  };

  it("run refuses a database with tables but no history, and points to baseline", async () => {
    const r = await runCli(["migration:run"], dbs.env);
    expect(r.code).toBe(1);
    expect(r.stderr.trim()).toBe("error: authdb: has 1 table but no migration history: adopt it with `npm run migration:baseline -- --db authdb`");
  });

  it("baseline, run and check all succeed, and every row is still there", async () => {
    const before = await rowsOf();
    expect(before["admindb.documents"]).toBe(30);

    const b = await runCli(["migration:baseline"], dbs.env);
    expect(b.stderr).toBe("");
    expect(b.code).toBe(0);
    for (const db of DATABASES) expect(b.stdout).toMatch(new RegExp(`${db}: schema identical to Init\\d{13}: recorded it as applied \\(no data touched\\)`));
    const history = await historyOf(dbs.names.authdb);
    expect(history.history.map((h) => h.direction)).toEqual(["baseline"]);

    const run = await runCli(["migration:run"], dbs.env);
    expect(run.stderr).toBe("");
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/authdb: applied NormalizeRolesDefault\d{13}/);

    const check = await runCli(["migration:check"], dbs.env);
    expect(check.stdout).toContain("no drift");
    expect(check.code).toBe(0);
    expect(await rowsOf()).toEqual(before);

    const again = await runCli(["migration:baseline"], dbs.env);
    expect(again.code).toBe(0);
    expect(again.stdout).toContain("authdb: already has migration history: nothing to do");
  });
});

describe("legacy databases drifted by hand", () => {
  const dbs = testDatabases("drifted");
  beforeAll(async () => {
    await buildLegacy(dbs);
    await withClient(dbs.names.admindb, (c) => c.query(`DROP INDEX idx_documents_status; ALTER TABLE knowledge_bases ALTER COLUMN status SET DEFAULT 'draft'`));
    await withClient(dbs.names.apidb, (c) => c.query(`ALTER TABLE profiles ADD COLUMN avatar_url text; ALTER TABLE profiles ALTER COLUMN phone TYPE varchar(20)`));
  });
  afterAll(() => dbs.drop());

  it("baseline refuses, names each difference, records nothing", async () => {
    const r = await runCli(["migration:baseline"], dbs.env);
    expect(r.code).toBe(1);
    const lines = r.stderr.trim().split("\n");
    expect(lines).toEqual(expect.arrayContaining([
      expect.stringMatching(/^error: apidb: schema differs from Init\d{13}; nothing recorded:$/),
      "apidb: profiles.phone type character varying(20), expected text",
      "apidb: column profiles.avatar_url unexpected",
      "admindb: knowledge_bases.status default 'draft'::character varying, expected 'active'::character varying",
      "admindb: index idx_documents_status missing",
    ]));
    expect(lines.filter((l) => l.startsWith("admindb: ") || l.startsWith("apidb: "))).toHaveLength(4);
    expect(r.stdout).toMatch(/authdb: schema identical to Init\d{13}/);
    for (const db of ["apidb", "admindb"] as const) expect((await historyOf(dbs.names[db])).history).toEqual([]);
  });
});

describe("drift after migrating", () => {
  const dbs = testDatabases("drift");
  beforeAll(async () => {
    expect((await runCli(["migration:run"], dbs.env)).code).toBe(0);
  });
  afterAll(() => dbs.drop());

  it("a hand-made change is schema drift and entity drift, with the SQL; exit 1", async () => {
    await withClient(dbs.names.admindb, (c) => c.query(`DROP INDEX idx_documents_status`));
    await withClient(dbs.names.apidb, (c) => c.query(`ALTER TABLE profiles ALTER COLUMN phone TYPE varchar(20)`));
    const r = await runCli(["migration:check"], dbs.env);
    expect(r.code).toBe(1);
    expect(r.stdout).toContain("admindb: index idx_documents_status missing");
    expect(r.stdout).toContain("apidb: profiles.phone type character varying(20), expected text");
    expect(r.stdout).toContain(`CREATE INDEX "idx_documents_status" ON "documents"`);
    expect(r.stdout).toContain("drift found");
  });
});

describe("a role that may not create databases", () => {
  const dbs = testDatabases("norole");
  const role = `nocreate_${Math.random().toString(36).slice(2, 8)}`;
  const scratch = `scratch_${role}`;
  const asRole = (database: string) => {
    const u = new URL(dbs.env.AUTHDB_URL);
    u.username = role;
    u.password = "pw-" + role;
    u.pathname = "/" + database;
    return u.toString();
  };
  beforeAll(async () => {
    expect((await runCli(["migration:run"], dbs.env)).code).toBe(0);
    await withClient("postgres", async (c) => {
      await c.query(`CREATE ROLE ${role} LOGIN PASSWORD 'pw-${role}' NOSUPERUSER NOCREATEDB`);
      await c.query(`CREATE DATABASE ${scratch} OWNER ${role}`);
    });
    // vector is not a trusted extension: the DBA installs it in the scratch database.
    await withClient(scratch, (c) => c.query(`CREATE EXTENSION vector`));
    for (const db of DATABASES) await withClient(dbs.names[db], (c) => c.query(`GRANT SELECT ON ALL TABLES IN SCHEMA public TO ${role}`));
  });
  afterAll(async () => {
    await dbs.drop();
    await withClient("postgres", async (c) => {
      await c.query(`DROP DATABASE IF EXISTS ${scratch} WITH (FORCE)`);
      await c.query(`DROP OWNED BY ${role}`).catch(() => undefined);
      await c.query(`DROP ROLE IF EXISTS ${role}`).catch(() => undefined);
    });
  });

  it("check says to pass a shadow database, then works with one and leaves it empty", async () => {
    const env = { AUTHDB_URL: asRole(dbs.names.authdb), APIDB_URL: asRole(dbs.names.apidb), ADMINDB_URL: asRole(dbs.names.admindb) };
    const refused = await runCli(["migration:check", "--db", "apidb"], env);
    expect(refused.code).toBe(1);
    expect(refused.stderr.trim()).toBe("error: apidb: this role may not create a shadow database: pass --shadow-url with an empty scratch database");

    const ok = await runCli(["migration:check"], { ...env, MIGRATION_SHADOW_URL: asRole(scratch) });
    expect(ok.stderr).toBe("");
    expect(ok.stdout).toContain("no drift");
    expect(ok.code).toBe(0);
    const left = await withClient(scratch, async (c) => ({
      tables: (await c.query(`SELECT tablename FROM pg_tables WHERE schemaname = 'public'`)).rows,
      extensions: (await c.query(`SELECT extname FROM pg_extension ORDER BY 1`)).rows.map((r) => r.extname),
    }));
    expect(left).toEqual({ tables: [], extensions: ["plpgsql", "vector"] });
  });
});
