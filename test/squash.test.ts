// migration:squash on real PostgreSQL: 40 admindb migrations (tables, foreign keys, an extension, a
// function and its trigger, a partial index, an enum, a view, default rows) squashed into one. A
// database built fresh from the squash has the catalog and rows of one built from the originals; the
// database squashed and another that had applied all 40 are up to date with no drift; one that had
// applied only some is refused by name, at squash time and at run time; a later migration deploys
// everywhere; the squash's down drops what it built; checksums and repair still apply to it.
import * as fs from "fs";
import * as path from "path";
import { readApplied } from "../src/runner/history";
import { diffCatalogs, readCatalog } from "../src/schema/catalog";
import { runCli } from "./support/cli";
import { testDatabases, withClient } from "./support/databases";
import { copyMigrations, MigrationsCopy } from "./support/migrations-dir";

jest.setTimeout(600_000);

const T0 = 1795900000000;
/** The 39 migrations added after admindb's Init: a bit of everything a squash must carry over. */
function addHistory(copy: MigrationsCopy): string[] {
  const names: string[] = [];
  const add = (name: string, up: string, down: string) => {
    const timestamp = T0 + names.length * 1000;
    copy.add("admindb", name, timestamp, up, down);
    names.push(`${name}${timestamp}`);
  };
  add("AddTrgm", `CREATE EXTENSION IF NOT EXISTS pg_trgm`, `DROP EXTENSION IF EXISTS pg_trgm`);
  add("AddStatusType", `CREATE TYPE ticket_status AS ENUM ('open', 'closed')`, `DROP TYPE ticket_status`);
  add("AddTickets", `CREATE TABLE tickets (id serial PRIMARY KEY, kb_id uuid REFERENCES knowledge_bases(id) ON DELETE CASCADE, title text NOT NULL, status ticket_status NOT NULL DEFAULT 'open', updated_at timestamptz)`, `DROP TABLE tickets`);
  add("AddTouchFunction", `CREATE FUNCTION touch_updated_at() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.updated_at := now(); RETURN NEW; END; $$`, `DROP FUNCTION touch_updated_at()`);
  add("AddTouchTrigger", `CREATE TRIGGER tickets_touch BEFORE UPDATE ON tickets FOR EACH ROW EXECUTE FUNCTION touch_updated_at()`, `DROP TRIGGER tickets_touch ON tickets`);
  add("AddOpenTicketsIndex", `CREATE INDEX tickets_open_idx ON tickets (kb_id) WHERE status = 'open'`, `DROP INDEX tickets_open_idx`);
  add("AddTitleTrgmIndex", `CREATE INDEX tickets_title_trgm ON tickets USING gin (title gin_trgm_ops)`, `DROP INDEX tickets_title_trgm`);
  add("AddOpenTicketsView", `CREATE VIEW open_tickets AS SELECT id, title FROM tickets WHERE status = 'open'`, `DROP VIEW open_tickets`);
  add("AddSettingDefaults", `INSERT INTO system_settings (key, value) VALUES ('ticket_limit', '{"max": 10}')`, `DELETE FROM system_settings WHERE key = 'ticket_limit'`);
  for (let i = names.length + 1; i <= 39; i++) {
    add(`AddNote${i}`, `CREATE TABLE note_${i} (id int PRIMARY KEY, ticket_id int REFERENCES tickets(id), body text DEFAULT 'n${i}')`, `DROP TABLE note_${i}`);
  }
  return names;
}

describe("migration:squash", () => {
  const old = testDatabases("sqold");
  const other = testDatabases("sqother");
  const behind = testDatabases("sqbehind");
  const fresh = testDatabases("sqfresh");
  let copy: MigrationsCopy;
  let added: string[];
  const env = (dbs: typeof old) => ({ ...dbs.env, MIGRATIONS_DIR: copy.root });
  const admindb = (dbs: typeof old) => dbs.names.admindb;
  const settings = (database: string) => withClient(database, async (c) => (await c.query(`SELECT key, value FROM system_settings WHERE key <> 'schema_version' ORDER BY key`)).rows);

  beforeAll(async () => {
    copy = copyMigrations();
    added = addHistory(copy);
    // --unsafe: the hand-written indexes are built without CONCURRENTLY (the lint would refuse them).
    for (const dbs of [old, other]) {
      const r = await runCli(["migration:run", "--no-backup", "--unsafe"], env(dbs));
      if (r.code !== 0) throw new Error(r.stderr);
    }
    const r = await runCli(["migration:run", "--no-backup", "--unsafe", "--to", added[19]], env(behind));
    if (r.code !== 0) throw new Error(r.stderr);
  });
  afterAll(async () => {
    copy.remove();
    for (const dbs of [old, other, behind, fresh]) await dbs.drop();
  });

  it("is refused for a database that has not applied everything up to the name, by name, changing nothing", async () => {
    const before = fs.readdirSync(path.join(copy.root, "admindb")).sort();
    const r = await runCli(["migration:squash", "--db", "admindb", "--to", added[38]], env(behind));
    expect(r.code).toBe(1);
    expect(r.stderr.trim().split("\n")).toEqual([expect.stringMatching(new RegExp(`^error: admindb: database "${admindb(behind)}" has not applied ${added[20]}, ${added[21]}, .* and 14 more \\(squashing up to ${added[38]}\\): squash only what every environment has applied`))]);
    expect(fs.readdirSync(path.join(copy.root, "admindb")).sort()).toEqual(before);
    const up = await runCli(["migration:squash", "--db", "admindb", "--to", added[30].slice(0, -13)], env(behind));
    expect(up.code).toBe(1);
    expect(up.stderr).toContain(`has not applied ${added[20]}`);
    expect(fs.readdirSync(path.join(copy.root, "admindb")).sort()).toEqual(before);
  });

  it("squashes 40 migrations into one that builds the same schema and rows; every environment follows", async () => {
    const originals = await readCatalog_(admindb(old));
    const originalRows = await settings(admindb(old));

    const squash = await runCli(["migration:squash", "--db", "admindb"], env(old));
    expect(errorsOf(squash.stderr)).toEqual([]);
    expect(squash.code).toBe(0);
    const files = fs.readdirSync(path.join(copy.root, "admindb"));
    expect(files).toEqual([`${T0 + 38_000}-Squash${added[38].slice(0, -13)}.ts`]);
    expect(squash.stdout).toContain(`admindb: squashed 40 migrations (Init1795519558038 ... ${added[38]})`);
    const name = `Squash${added[38]}`;
    const source = fs.readFileSync(path.join(copy.root, "admindb", files[0]), "utf8");
    for (const made of ["CREATE EXTENSION IF NOT EXISTS pg_trgm", "CREATE FUNCTION public.touch_updated_at()", "CREATE TRIGGER tickets_touch", "CREATE INDEX tickets_open_idx", "CREATE VIEW public.open_tickets", "INSERT INTO public.system_settings"]) {
      expect(source).toContain(made);
    }

    // The squashed database: its history is the squash, the replaced rows kept; up to date, no drift.
    await withClient(admindb(old), async (c) => {
      expect((await readApplied(c)).map((a) => a.name)).toEqual([name]);
      expect((await c.query(`SELECT count(*)::int AS n FROM migrations_squashed WHERE squash = $1`, [name])).rows[0].n).toBe(40);
    });
    const show = await runCli(["migration:show", "--db", "admindb", "--json"], env(old));
    expect(JSON.parse(show.stdout).databases[0]).toEqual(expect.objectContaining({ applied: [{ name, checksum: "ok" }], pending: [], historyDrift: false }));
    const check = await runCli(["migration:check", "--db", "admindb"], env(old));
    expect(check.stdout + check.stderr).toContain("no drift");
    expect(check.code).toBe(0);

    // Another environment that had applied all 40: seen as up to date; its next run rewrites its history.
    const otherShow = await runCli(["migration:show", "--db", "admindb", "--json"], env(other));
    expect(JSON.parse(otherShow.stdout).databases[0]).toEqual(expect.objectContaining({ pending: [], historyDrift: false }));
    const otherRun = await runCli(["migration:run", "--no-backup"], env(other));
    expect(otherRun.code).toBe(0);
    expect(otherRun.stdout).toContain(`admindb: history rewritten to ${name} (it replaces the 40 migrations this database had applied`);
    await withClient(admindb(other), async (c) => expect((await readApplied(c)).map((a) => a.name)).toEqual([name]));
    expect((await runCli(["migration:check", "--db", "admindb"], env(other))).code).toBe(0);

    // One that had applied 20 of them: refused by name, nothing changed.
    const behindRun = await runCli(["migration:run", "--no-backup"], env(behind));
    expect(behindRun.code).toBe(1);
    expect(errorsOf(behindRun.stderr)).toEqual([expect.stringMatching(new RegExp(`^error: admindb: has applied 21 of the 40 migrations squashed into ${name}, not ${added[20]}, .* and 14 more: deploy a release that still has them first, then this one$`))]);
    await withClient(admindb(behind), async (c) => expect((await readApplied(c)).length).toBe(21));

    // Built fresh from the squashed set: the same catalog and the same rows as from the originals.
    const run = await runCli(["migration:run", "--no-backup"], env(fresh));
    expect(errorsOf(run.stderr)).toEqual([]);
    expect(run.code).toBe(0);
    expect(diffCatalogs(await readCatalog_(admindb(fresh)), originals)).toEqual([]);
    expect(diffCatalogs(await readCatalog_(admindb(old)), originals)).toEqual([]);
    expect(await settings(admindb(fresh))).toEqual(originalRows);

    // A later migration deploys on the squashed, the rewritten and the fresh database alike.
    copy.add("admindb", "AddPriority", T0 + 100_000, `ALTER TABLE tickets ADD COLUMN priority int`, `ALTER TABLE tickets DROP COLUMN priority`);
    for (const dbs of [old, other, fresh]) {
      const later = await runCli(["migration:run", "--no-backup"], env(dbs));
      expect(errorsOf(later.stderr)).toEqual([]);
      expect(later.stdout).toContain(`admindb: applied AddPriority${T0 + 100_000}`);
    }

    // Its down drops what it built: nothing of the schema is left, nor the extensions it created.
    const revert = await runCli(["migration:revert", "--db", "admindb", "--steps", "2"], env(fresh));
    // (It drops system_settings too, so maintenance_mode cannot be put back: a warning, as for reverting Init.)
    // Said before it runs: the down drops tables that hold the rows the migrations inserted.
    expect(revert.stderr).toContain("warning: admindb: system_settings: 3 rows will be dropped");
    expect(errorsOf(revert.stderr).filter((l) => !l.includes("maintenance_mode") && !/ will be dropped$/.test(l))).toEqual([]);
    expect(revert.code).toBe(0);
    await withClient(admindb(fresh), async (c) => {
      const left = await c.query(`SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public' AND c.relname NOT LIKE 'migrations%' AND c.relname NOT LIKE 'PK_8c82%'`);
      expect(left.rows).toEqual([]);
      expect((await c.query(`SELECT extname FROM pg_extension ORDER BY 1`)).rows.map((r) => r.extname)).toEqual(["plpgsql"]);
    });
  });

  it("keeps checksums on the squash: an edit is refused until migration:repair accepts it", async () => {
    const [file] = fs.readdirSync(path.join(copy.root, "admindb")).filter((f) => f.includes("-Squash"));
    fs.appendFileSync(path.join(copy.root, "admindb", file), "// reviewed\n");
    const run = await runCli(["migration:run", "--no-backup"], env(other));
    expect(run.code).toBe(1);
    expect(run.stderr).toContain(`${file} was edited after it was applied`);
    const repair = await runCli(["migration:repair", "--db", "admindb"], env(other));
    expect(repair.code).toBe(0);
    expect(repair.stdout).toContain(`accepted the edit of`);
    expect((await runCli(["migration:run", "--no-backup"], env(other))).code).toBe(0);
  });
});

/** stderr without the warning every --no-backup run prints. */
const errorsOf = (stderr: string) => stderr.split("\n").filter((l) => l.trim() && !l.startsWith("warning: --no-backup"));

function readCatalog_(database: string) {
  return withClient(database, (c) => readCatalog(c));
}
