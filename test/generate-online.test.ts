// migration:generate writes online-safe migrations for tables that already exist, and loses no
// data silently. First the rewrites as plain functions (TypeORM's query lists in, the migrations'
// statements out), then on a real PostgreSQL: the database is changed by hand so the fixed entities
// differ from it, `generate` writes the migrations, and the project's runner applies them up, down
// and up again (with rows in the tables).
import * as fs from "fs";
import { Column, DataSource, Index } from "typeorm";
import { checkDatabases } from "../src/commands/check";
import { generateMigrations, DbGenerateResult } from "../src/commands/generate";
import { loadConfig } from "../src/config";
import { DATABASES, DbName } from "../src/databases";
import { Profile } from "../src/entities/apidb";
import { openDataSource } from "../src/postgres/connect";
import { ensureBookkeeping } from "../src/runner/history";
import { loadMigrationFiles } from "../src/runner/migration-files";
import { applyMigration, DEFAULT_TIMEOUTS } from "../src/runner/migrator";
import { knownAutomaticCast, narrowing, shortType } from "../src/safety/column-type-change";
import { columnTypeChanges, planOnlineMigration } from "../src/safety/online-ddl";
import { schemaDiff } from "../src/schema/diff";
import { renderMigration } from "../src/schema/render-migration";
import { createAll, testDatabases, withClient } from "./support/databases";
import { copyMigrations } from "./support/migrations-dir";

const q = (list: string[]) => list.map((query) => ({ query }));
const sqlOf = (list: Array<{ query: string }>) => list.map((s) => s.query);
/** TypeORM's diff: `up` in order, `down` in the order it runs (as schemaDiff returns it). */
const plan = (up: string[], down: string[], cast?: (from: string, to: string) => boolean) => planOnlineMigration({ up: q(up), down: q(down) }, cast);

describe("online-safe rewrites (no database)", () => {
  it("an index on an existing table: CONCURRENTLY both ways, in the transaction-free part", () => {
    const p = plan([`CREATE INDEX "idx_a" ON "t"  ("a") `], [`DROP INDEX "public"."idx_a"`]);
    expect(p.transaction).toEqual({ up: [], down: [] });
    expect(p.finish).toEqual({ up: [], down: [] });
    // Runs again after a failure part way (a failed build leaves an INVALID index): squawk's prefer-robust-stmts.
    expect(sqlOf(p.concurrent.up)).toEqual([`DROP INDEX CONCURRENTLY IF EXISTS "public"."idx_a"`, `CREATE INDEX CONCURRENTLY IF NOT EXISTS "idx_a" ON "t"  ("a") `]);
    expect(sqlOf(p.concurrent.down)).toEqual([`DROP INDEX CONCURRENTLY IF EXISTS "public"."idx_a"`]);
    expect(p.notices).toEqual([]);
  });

  it("dropping an index of an existing table: CONCURRENTLY, and down recreates it CONCURRENTLY", () => {
    const p = plan([`DROP INDEX "public"."idx_a"`], [`CREATE UNIQUE INDEX "idx_a" ON "t" USING btree ("a") `]);
    expect(sqlOf(p.concurrent.up)).toEqual([`DROP INDEX CONCURRENTLY IF EXISTS "public"."idx_a"`]);
    expect(sqlOf(p.concurrent.down)).toEqual([`DROP INDEX CONCURRENTLY IF EXISTS "public"."idx_a"`, `CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS "idx_a" ON "t" USING btree ("a") `]);
  });

  it("a table created by the same change keeps the plain forms, in one transaction", () => {
    const up = [`CREATE TABLE "n" ("id" uuid NOT NULL, "k" uuid, CONSTRAINT "n_pkey" PRIMARY KEY ("id"))`, `CREATE INDEX "idx_n" ON "n"  ("k") `,
      `ALTER TABLE "n" ADD CONSTRAINT "FK_1" FOREIGN KEY ("k") REFERENCES "t"("id") ON DELETE CASCADE ON UPDATE NO ACTION`];
    const down = [`ALTER TABLE "n" DROP CONSTRAINT "FK_1"`, `DROP INDEX "public"."idx_n"`, `DROP TABLE "n"`];
    const p = plan(up, down);
    expect(sqlOf(p.transaction.up)).toEqual(up);
    expect(sqlOf(p.transaction.down)).toEqual(down);
    expect(p.concurrent).toEqual({ up: [], down: [] });
    expect(p.finish).toEqual({ up: [], down: [] });
  });

  it("an index dropped with its column stays plain, and the DROP COLUMN is announced", () => {
    const p = plan([`DROP INDEX "public"."idx_nick"`, `ALTER TABLE "profiles" DROP COLUMN "nickname"`],
      [`ALTER TABLE "profiles" ADD "nickname" text`, `CREATE INDEX "idx_nick" ON "profiles" USING btree ("nickname") `]);
    expect(sqlOf(p.transaction.up)).toEqual([`DROP INDEX "public"."idx_nick"`, `ALTER TABLE "profiles" DROP COLUMN "nickname"`]);
    expect(p.concurrent.up).toEqual([]);
    expect(p.notices).toEqual([{ phase: "transaction", subject: "profiles.nickname", problem: "DROP COLUMN deletes the column and its data", look: "" }]);
  });

  it("an index name the transaction creates again is dropped plainly before it", () => {
    const p = plan([`DROP INDEX "public"."idx_x"`, `CREATE TABLE "n" ("a" text)`, `CREATE INDEX "idx_x" ON "n"  ("a") `],
      [`DROP INDEX "public"."idx_x"`, `DROP TABLE "n"`, `CREATE INDEX "idx_x" ON "t" USING btree ("a") `]);
    expect(sqlOf(p.transaction.up)).toEqual([`DROP INDEX "public"."idx_x"`, `CREATE TABLE "n" ("a" text)`, `CREATE INDEX "idx_x" ON "n"  ("a") `]);
    expect(p.concurrent.up).toEqual([]);
  });

  it("FOREIGN KEY and CHECK on an existing table: NOT VALID in the transaction, VALIDATE in the next one", () => {
    const fk = `ALTER TABLE "documents" ADD CONSTRAINT "fk_kb" FOREIGN KEY ("kb") REFERENCES "kbs"("id") ON DELETE CASCADE ON UPDATE NO ACTION`;
    const check = `ALTER TABLE "documents" ADD CONSTRAINT "check_owner" CHECK ("kb" IS NOT NULL OR "user_id" IS NOT NULL)`;
    const p = plan([check, fk], [`ALTER TABLE "documents" DROP CONSTRAINT "fk_kb"`, `ALTER TABLE "documents" DROP CONSTRAINT "check_owner"`]);
    expect(sqlOf(p.transaction.up)).toEqual([`${check} NOT VALID`, `${fk} NOT VALID`]);
    expect(sqlOf(p.transaction.down)).toEqual([`ALTER TABLE "documents" DROP CONSTRAINT "fk_kb"`, `ALTER TABLE "documents" DROP CONSTRAINT "check_owner"`]);
    expect(p.concurrent).toEqual({ up: [], down: [] });
    expect(sqlOf(p.finish.up)).toEqual([`ALTER TABLE "documents" VALIDATE CONSTRAINT "check_owner"`, `ALTER TABLE "documents" VALIDATE CONSTRAINT "fk_kb"`]);
    expect(p.finish.down).toEqual([]);
  });

  it("UNIQUE on an existing table: a unique index built CONCURRENTLY, then the constraint USING it, in a transaction", () => {
    const p = plan([`ALTER TABLE "t" ADD CONSTRAINT "UQ_1" UNIQUE ("a", "b") DEFERRABLE INITIALLY DEFERRED`], [`ALTER TABLE "t" DROP CONSTRAINT "UQ_1"`]);
    expect(p.transaction.up).toEqual([]);
    expect(sqlOf(p.concurrent.up)).toEqual([`DROP INDEX CONCURRENTLY IF EXISTS "UQ_1"`, `CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS "UQ_1" ON "t" ("a", "b")`]);
    expect(sqlOf(p.concurrent.down)).toEqual([`DROP INDEX CONCURRENTLY IF EXISTS "UQ_1"`]);
    expect(sqlOf(p.finish.up)).toEqual([`ALTER TABLE "t" ADD CONSTRAINT "UQ_1" UNIQUE USING INDEX "UQ_1" DEFERRABLE INITIALLY DEFERRED`]);
    expect(sqlOf(p.finish.down)).toEqual([`ALTER TABLE "t" DROP CONSTRAINT "UQ_1"`]);
  });

  it("a foreign key referencing a UNIQUE built concurrently waits for it", () => {
    const fk = `ALTER TABLE "c" ADD CONSTRAINT "FK_2" FOREIGN KEY ("code") REFERENCES "t"("code") ON DELETE NO ACTION ON UPDATE NO ACTION`;
    const p = plan([fk, `ALTER TABLE "t" ADD CONSTRAINT "UQ_1" UNIQUE ("code")`], [`ALTER TABLE "t" DROP CONSTRAINT "UQ_1"`, `ALTER TABLE "c" DROP CONSTRAINT "FK_2"`]);
    expect(p.transaction.up).toEqual([]);
    expect(sqlOf(p.concurrent.up)).toEqual([`DROP INDEX CONCURRENTLY IF EXISTS "UQ_1"`, `CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS "UQ_1" ON "t" ("code")`]);
    expect(sqlOf(p.finish.up)).toEqual([`${fk} NOT VALID`, `ALTER TABLE "c" VALIDATE CONSTRAINT "FK_2"`, `ALTER TABLE "t" ADD CONSTRAINT "UQ_1" UNIQUE USING INDEX "UQ_1"`]);
    expect(sqlOf(p.finish.down)).toEqual([`ALTER TABLE "t" DROP CONSTRAINT "UQ_1"`, `ALTER TABLE "c" DROP CONSTRAINT "FK_2"`]);
  });

  it("a new column and an index on it: the column first (transaction), the index after", () => {
    const p = plan([`ALTER TABLE "profiles" ADD "nickname" character varying(40)`, `CREATE INDEX "idx_nick" ON "profiles"  ("nickname") `],
      [`DROP INDEX "public"."idx_nick"`, `ALTER TABLE "profiles" DROP COLUMN "nickname"`]);
    expect(sqlOf(p.transaction.up)).toEqual([`ALTER TABLE "profiles" ADD "nickname" character varying(40)`]);
    expect(sqlOf(p.transaction.down)).toEqual([`ALTER TABLE "profiles" DROP COLUMN "nickname"`]);
    expect(sqlOf(p.concurrent.up)).toEqual([`DROP INDEX CONCURRENTLY IF EXISTS "public"."idx_nick"`, `CREATE INDEX CONCURRENTLY IF NOT EXISTS "idx_nick" ON "profiles"  ("nickname") `]);
    expect(sqlOf(p.concurrent.down)).toEqual([`DROP INDEX CONCURRENTLY IF EXISTS "public"."idx_nick"`]);
  });

  it("a type change (TypeORM: DROP COLUMN + ADD) becomes ALTER COLUMN TYPE both ways; the index around it is kept", () => {
    const up = [
      `DROP INDEX "public"."custom_id_idx"`,
      `ALTER TABLE "emb" DROP COLUMN "custom_id"`,
      `ALTER TABLE "emb" ADD "custom_id" character varying(255)`,
      `CREATE INDEX "custom_id_idx" ON "emb"  ("custom_id") `,
    ];
    const down = [
      `DROP INDEX "public"."custom_id_idx"`,
      `ALTER TABLE "emb" DROP COLUMN "custom_id"`,
      `ALTER TABLE "emb" ADD "custom_id" text`,
      `CREATE INDEX "custom_id_idx" ON "emb" USING btree ("custom_id") `,
    ];
    expect(columnTypeChanges({ up: q(up), down: q(down) })).toEqual([
      { table: `"emb"`, column: "custom_id", from: { type: "text", notNull: false }, to: { type: "character varying(255)", notNull: false } },
    ]);
    const p = plan(up, down);
    expect(sqlOf(p.transaction.up)).toEqual([`ALTER TABLE "emb" ALTER COLUMN "custom_id" TYPE character varying(255)`]);
    expect(sqlOf(p.transaction.down)).toEqual([`ALTER TABLE "emb" ALTER COLUMN "custom_id" TYPE text`]);
    expect(p.transaction.up[0].comment).toMatch(/No USING on purpose: an explicit cast would cut such values off/);
    expect(p.concurrent).toEqual({ up: [], down: [] });
    expect(p.notices).toEqual([{
      phase: "transaction", subject: "emb.custom_id", look: "",
      problem: "text -> varchar(255) narrows (values longer than 255 characters stop the migration)",
    }]);
  });

  it("a type change without an automatic cast: USING, with the default dropped before and set after", () => {
    const p = plan([`ALTER TABLE "users" DROP COLUMN "login_attempts"`, `ALTER TABLE "users" ADD "login_attempts" integer NOT NULL DEFAULT '0'`],
      [`ALTER TABLE "users" DROP COLUMN "login_attempts"`, `ALTER TABLE "users" ADD "login_attempts" text DEFAULT '0'`]);
    expect(sqlOf(p.transaction.up)).toEqual([
      `ALTER TABLE "users" ALTER COLUMN "login_attempts" DROP DEFAULT, ALTER COLUMN "login_attempts" TYPE integer USING "login_attempts"::integer, ALTER COLUMN "login_attempts" SET DEFAULT '0', ALTER COLUMN "login_attempts" SET NOT NULL`,
    ]);
    expect(sqlOf(p.transaction.down)).toEqual([
      `ALTER TABLE "users" ALTER COLUMN "login_attempts" DROP DEFAULT, ALTER COLUMN "login_attempts" DROP NOT NULL, ALTER COLUMN "login_attempts" TYPE text, ALTER COLUMN "login_attempts" SET DEFAULT '0'`,
    ]);
    expect(p.notices).toEqual([{
      phase: "transaction", subject: "users.login_attempts", look: "the USING",
      problem: `text -> integer has no automatic cast (USING "login_attempts"::integer)`,
    }]);
  });

  it("a column TypeORM recreates that no type change expresses (an enum) stays DROP + ADD, announced", () => {
    const p = plan([`ALTER TABLE "t" DROP COLUMN "s"`, `ALTER TABLE "t" ADD "s" "public"."t_s_enum" NOT NULL`],
      [`ALTER TABLE "t" DROP COLUMN "s"`, `ALTER TABLE "t" ADD "s" text NOT NULL`]);
    expect(sqlOf(p.transaction.up)).toEqual([`ALTER TABLE "t" DROP COLUMN "s"`, `ALTER TABLE "t" ADD "s" "public"."t_s_enum" NOT NULL`]);
    expect(p.notices.map((n) => `${n.subject}: ${n.problem}`)).toEqual(["t.s: DROP COLUMN deletes the column and its data"]);
  });

  it("up and down that do not pair up: written as TypeORM generated them, and said so", () => {
    const p = plan([`CREATE INDEX "idx_a" ON "t"  ("a") `, `DROP TABLE "old"`], [`DROP INDEX "public"."idx_a"`]);
    expect(sqlOf(p.transaction.up)).toEqual([`CREATE INDEX "idx_a" ON "t"  ("a") `, `DROP TABLE "old"`]);
    expect(p.concurrent.up).toEqual([]);
    expect(p.notices.map((n) => n.subject)).toEqual(["up/down", "old"]);
  });

  it.each([
    ["text", "character varying(20)", "narrows (values longer than 20 characters stop the migration)"],
    ["character varying(255)", "character varying(20)", "narrows (values longer than 20 characters stop the migration)"],
    ["character varying(20)", "text", undefined],
    ["bigint", "integer", "narrows (values out of the integer range stop the migration)"],
    ["integer", "bigint", undefined],
    ["numeric(10,2)", "numeric(8,2)", "narrows (values with more than 6 digits before the point stop the migration)"],
    ["numeric(10,4)", "numeric(12,2)", "narrows (values are rounded to 2 decimal places)"],
    ["double precision", "real", "narrows (precision beyond about 6 significant digits is lost)"],
    ["TIMESTAMP", "date", "narrows (the time of day is dropped)"],
    ["TIMESTAMP WITH TIME ZONE", "TIMESTAMP", "changes values (values are shifted to the session time zone and lose their zone)"],
    ["text array", "character varying(8) array", "narrows (array elements: values longer than 8 characters stop the migration)"],
    ["uuid", "text", undefined],
  ])("narrowing(%s -> %s)", (from, to, expected) => {
    const n = narrowing(from, to);
    expect(n && `${n.verb} (${n.effect})`).toEqual(expected);
  });

  it("the conservative cast list and the short type names", () => {
    expect(knownAutomaticCast("text", "character varying(20)")).toBe(true);
    expect(knownAutomaticCast("bigint", "integer")).toBe(true);
    expect(knownAutomaticCast("text", "integer")).toBe(false);
    expect(knownAutomaticCast("jsonb", "uuid")).toBe(false);
    expect(shortType("character varying(20)")).toBe("varchar(20)");
    expect(shortType("TIMESTAMP WITH TIME ZONE")).toBe("timestamptz");
    expect(shortType("text array")).toBe("text[]");
  });

  it("renders a transaction-free migration with its comments, still a TypeORM migration", () => {
    const text = renderMigration("AddX1795600000001", [{ query: `CREATE INDEX CONCURRENTLY "i" ON "t" ("a")`, comment: "first\nsecond" }], [{ query: `DROP INDEX CONCURRENTLY "public"."i"` }], { transaction: false, header: ["part 2"] });
    expect(text).toContain(`// part 2\nimport { MigrationInterface, QueryRunner } from "typeorm";`);
    expect(text).toContain(`export class AddX1795600000001 implements MigrationInterface {\n    name = "AddX1795600000001";\n    transaction = false;\n`);
    expect(text).toContain(`        // first\n        // second\n        await queryRunner.query(\`CREATE INDEX CONCURRENTLY "i" ON "t" ("a")\`);`);
    expect(renderMigration("A1795600000000", [], [])).not.toContain("transaction");
  });
});

/** Fresh databases at the project's migrations, with a private migrations folder generate writes into. */
function liveDatabases(label: string, migrate: DbName[]) {
  const dbs = testDatabases(label);
  const copy = copyMigrations();
  const config = loadConfig({ ...dbs.env, MIGRATIONS_DIR: copy.root });
  const sources = {} as Record<DbName, DataSource>;
  let timestamp = 1795600000000;
  const live = {
    dbs, copy, config, sources,
    sql: (db: DbName, text: string, params?: unknown[]) => withClient(dbs.names[db], (c) => c.query(text, params)),
    /** Runs one migration of the folder with the project's runner. */
    apply: async (db: DbName, name: string, direction: "up" | "down") => {
      const file = loadMigrationFiles(copy.root, db).find((f) => f.name === name);
      if (!file) throw new Error(`no migration ${name} in ${db}`);
      await applyMigration(sources[db], file, direction, { runId: "test", command: "test", timeouts: DEFAULT_TIMEOUTS });
    },
    /** The SQL TypeORM would still generate for the database: empty when it matches the entities. */
    diff: async (db: DbName) => (await schemaDiff(sources[db])).up.map((s) => s.query),
    generate: async (name: string, db: DbName, named: { renames?: string[]; drops?: string[] } = {}): Promise<DbGenerateResult> => {
      timestamp += 10;
      const report = await generateMigrations(config, { name, dbs: [db], timestamp, ...named });
      expect(report.warnings).toEqual(report.databases[0].warnings);
      return report.databases[0];
    },
  };
  beforeAll(async () => {
    await createAll(dbs);
    for (const db of DATABASES) {
      sources[db] = await openDataSource(config.targets[db], 5000);
      if (!migrate.includes(db)) continue;
      await ensureBookkeeping(sources[db]);
      for (const file of loadMigrationFiles(copy.root, db)) await live.apply(db, file.name, "up");
    }
  });
  afterAll(async () => {
    for (const ds of Object.values(sources)) await ds.destroy();
    await dbs.drop();
    copy.remove();
  });
  return live;
}

describe("generate on a live database: online-safe and no data lost", () => {
  const live = liveDatabases("online", [...DATABASES]);
  const { sql, apply, diff, generate } = live;

  it("an index on an existing table: CONCURRENTLY both ways, transaction = false, round trip", async () => {
    await sql("apidb", `INSERT INTO profiles (user_id, name) SELECT gen_random_uuid(), 'name ' || g FROM generate_series(1, 200) g`);
    await sql("apidb", `DROP INDEX idx_profiles_user_id; CREATE INDEX idx_profiles_extra ON profiles (name)`);
    const r = await generate("ProfileIndexes", "apidb");
    expect(r.changed).toBe(true);
    // An index no entity declares, made by hand (no migration created it): dropped, and said so.
    expect(r.warnings).toEqual([`apidb: index idx_profiles_extra is dropped: no entity declares it (to keep it, declare it with @Index("idx_profiles_extra", { synchronize: false }))`]);
    expect(r.migrations).toHaveLength(1);
    const [m] = r.migrations;
    expect(m.transaction).toBe(false);
    expect(m.up).toEqual([
      `DROP INDEX CONCURRENTLY IF EXISTS "public"."idx_profiles_extra"`,
      `DROP INDEX CONCURRENTLY IF EXISTS "public"."idx_profiles_user_id"`,
      `CREATE INDEX CONCURRENTLY IF NOT EXISTS "idx_profiles_user_id" ON "profiles"  ("user_id") `,
    ]);
    expect(m.down).toEqual([
      `DROP INDEX CONCURRENTLY IF EXISTS "public"."idx_profiles_user_id"`,
      `DROP INDEX CONCURRENTLY IF EXISTS "public"."idx_profiles_extra"`,
      `CREATE INDEX CONCURRENTLY IF NOT EXISTS "idx_profiles_extra" ON "profiles" USING btree ("name") `,
    ]);
    expect(r.files).toEqual([m.file]);
    expect(r.file).toBe(m.file);
    const text = fs.readFileSync(m.file!, "utf8");
    expect(text).toMatch(/export class ProfileIndexes\d{13} implements MigrationInterface \{\n {4}name = "ProfileIndexes\d{13}";\n {4}transaction = false;\n/);

    const indexes = async () => (await sql("apidb", `SELECT c.relname, i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = 'profiles'::regclass AND c.relname LIKE 'idx_%' ORDER BY 1`)).rows;
    await apply("apidb", m.name, "up"); // CONCURRENTLY fails inside a transaction: this ran outside one
    expect(await diff("apidb")).toEqual([]);
    expect(await indexes()).toEqual([{ relname: "idx_profiles_user_id", indisvalid: true }]);
    await apply("apidb", m.name, "down");
    expect(await indexes()).toEqual([{ relname: "idx_profiles_extra", indisvalid: true }]);
    await apply("apidb", m.name, "up");
    expect(await diff("apidb")).toEqual([]);
  });

  it("a type change keeps every value up and down (varchar(20) -> text)", async () => {
    await sql("apidb", `ALTER TABLE profiles ALTER COLUMN phone TYPE varchar(20)`);
    await sql("apidb", `UPDATE profiles SET phone = '+81-' || substr(md5(name), 1, 12) WHERE name <> 'name 7'`);
    const phones = async () => (await sql("apidb", `SELECT id, phone FROM profiles ORDER BY id`)).rows;
    const type = async () => (await sql("apidb", `SELECT format_type(atttypid, atttypmod) AS t FROM pg_attribute WHERE attrelid = 'profiles'::regclass AND attname = 'phone'`)).rows[0].t;
    const before = await phones();
    expect(before.filter((p) => p.phone === null)).toHaveLength(1);

    const r = await generate("WidenPhone", "apidb");
    expect(r.migrations.map((m) => [m.transaction, m.up, m.down])).toEqual([
      [true, [`ALTER TABLE "profiles" ALTER COLUMN "phone" TYPE text`], [`ALTER TABLE "profiles" ALTER COLUMN "phone" TYPE character varying(20)`]],
    ]);
    expect(r.warnings).toEqual([]);
    const name = r.migrations[0].name;
    await apply("apidb", name, "up");
    expect(await phones()).toEqual(before);
    expect(await type()).toBe("text");
    expect(await diff("apidb")).toEqual([]);
    await apply("apidb", name, "down");
    expect(await phones()).toEqual(before);
    expect(await type()).toBe("character varying(20)");
    await apply("apidb", name, "up");
    expect(await phones()).toEqual(before);
  });

  it("a cast PostgreSQL does not make by itself (text -> integer): two phases, the values kept both ways", async () => {
    await sql("authdb", `ALTER TABLE users ALTER COLUMN login_attempts DROP DEFAULT, ALTER COLUMN login_attempts TYPE text, ALTER COLUMN login_attempts SET DEFAULT '0'`);
    await sql("authdb", `INSERT INTO users (email, password_hash, login_attempts) VALUES ('a@x', 'h', '3'), ('b@x', 'h', NULL), ('c@x', 'h', '0')`);
    const attempts = async () => (await sql("authdb", `SELECT email, login_attempts FROM users ORDER BY email`)).rows;
    const r = await generate("LoginAttemptsInteger", "authdb");
    // A rewrite in place would hold ACCESS EXCLUSIVE for the whole table: expand, then contract.
    expect(r.migrations.map((m) => m.phase)).toEqual(["expand", "contract"]);
    const [expand, contract] = r.migrations;
    expect(fs.readFileSync(expand.file!, "utf8")).toContain(`toNew: "\\"login_attempts\\"::integer"`);
    expect(r.warnings).toEqual([`authdb: users.login_attempts: text -> integer in two phases (a rewrite in place would hold ACCESS EXCLUSIVE): a new column kept equal by a trigger and filled in batches, swapped in by migration:complete`]);
    const texts = await attempts();
    await apply("authdb", expand.name, "up");
    expect(await attempts()).toEqual(texts); // the old column still serves the old service
    await apply("authdb", contract.name, "up");
    expect(await attempts()).toEqual([{ email: "a@x", login_attempts: 3 }, { email: "b@x", login_attempts: null }, { email: "c@x", login_attempts: 0 }]);
    expect(await diff("authdb")).toEqual([]);
    await apply("authdb", contract.name, "down");
    await apply("authdb", expand.name, "down");
    expect(await attempts()).toEqual(texts);
    await apply("authdb", expand.name, "up");
    await apply("authdb", contract.name, "up");
    expect(await diff("authdb")).toEqual([]);
  });

  it("a narrowing change: refused while values do not fit; once they do, two phases, and a value written since stops the backfill instead of being cut", async () => {
    await sql("admindb", `ALTER TABLE langchain_pg_embedding ALTER COLUMN custom_id TYPE text`);
    await sql("admindb", `INSERT INTO langchain_pg_embedding (document, custom_id) VALUES ('d1', 'c-1'), ('d2', NULL), ('d3', repeat('x', 300))`);
    await expect(generate("CustomIdLength", "admindb")).rejects.toThrow(/^langchain_pg_embedding\.custom_id: 1 value does not convert text -> varchar\(255\) unchanged: change those rows first/);
    expect(fs.readdirSync(`${live.copy.root}/admindb`).filter((f) => /CustomIdLength/.test(f))).toEqual([]);
    await sql("admindb", `UPDATE langchain_pg_embedding SET custom_id = 'c-3' WHERE document = 'd3'`);
    const r = await generate("CustomIdLength", "admindb");
    expect(r.migrations.map((m) => m.phase)).toEqual(["expand", "contract"]);
    const [expand, contract] = r.migrations;

    await sql("admindb", `INSERT INTO langchain_pg_embedding (document, custom_id) VALUES ('d4', repeat('y', 300))`); // written after generate
    await expect(apply("admindb", expand.name, "up")).rejects.toThrow(/value too long for type character varying\(255\)/);
    expect((await sql("admindb", `SELECT length(custom_id) AS n FROM langchain_pg_embedding WHERE document = 'd4'`)).rows).toEqual([{ n: 300 }]);
    await sql("admindb", `UPDATE langchain_pg_embedding SET custom_id = 'c-4' WHERE document = 'd4'`);
    const ids = async () => (await sql("admindb", `SELECT document, custom_id FROM langchain_pg_embedding ORDER BY document`)).rows;
    const before = await ids();
    await apply("admindb", expand.name, "up"); // runs again after the failure: its steps are safe to repeat
    await apply("admindb", contract.name, "up");
    expect(await ids()).toEqual(before);
    expect(await diff("admindb")).toEqual([]);
    await apply("admindb", contract.name, "down");
    await apply("admindb", expand.name, "down");
    expect(await ids()).toEqual(before);
    await apply("admindb", expand.name, "up");
    await apply("admindb", contract.name, "up");
  });

  it("FOREIGN KEY and CHECK on an existing table: NOT VALID, then VALIDATE in the next migration, a transaction of its own", async () => {
    await sql("admindb", `INSERT INTO knowledge_bases (id, name, user_id) VALUES ('11111111-1111-1111-1111-111111111111', 'kb', gen_random_uuid())`);
    await sql("admindb", `INSERT INTO documents (knowledge_base_id, filename, original_filename, file_path, mime_type, file_size)
      SELECT '11111111-1111-1111-1111-111111111111', 'f' || g, 'f', '/p', 'text/plain', 1 FROM generate_series(1, 50) g`);
    await sql("admindb", `ALTER TABLE documents DROP CONSTRAINT documents_knowledge_base_id_fkey, DROP CONSTRAINT check_owner`);
    const r = await generate("DocumentConstraints", "admindb");
    expect(r.warnings).toEqual([]);
    const [first, second] = r.migrations;
    expect(r.migrations).toHaveLength(2);
    expect(Number(second.name.slice(-13))).toBe(Number(first.name.slice(-13)) + 1);
    expect(first.transaction).toBe(true);
    expect(first.up).toEqual([
      `ALTER TABLE "documents" ADD CONSTRAINT "check_owner" CHECK ("knowledge_base_id" IS NOT NULL OR "user_id" IS NOT NULL) NOT VALID`,
      `ALTER TABLE "documents" ADD CONSTRAINT "documents_knowledge_base_id_fkey" FOREIGN KEY ("knowledge_base_id") REFERENCES "knowledge_bases"("id") ON DELETE CASCADE ON UPDATE NO ACTION NOT VALID`,
    ]);
    expect(first.down).toEqual([`ALTER TABLE "documents" DROP CONSTRAINT "documents_knowledge_base_id_fkey"`, `ALTER TABLE "documents" DROP CONSTRAINT "check_owner"`]);
    expect(second).toMatchObject({
      transaction: true,
      up: [`ALTER TABLE "documents" VALIDATE CONSTRAINT "check_owner"`, `ALTER TABLE "documents" VALIDATE CONSTRAINT "documents_knowledge_base_id_fkey"`],
      down: [],
    });
    const validated = async () => (await live.sql("admindb", `SELECT conname, convalidated FROM pg_constraint WHERE conrelid = 'documents'::regclass AND contype IN ('c', 'f') ORDER BY 1`)).rows;
    await apply("admindb", first.name, "up");
    expect(await validated()).toEqual([{ conname: "check_owner", convalidated: false }, { conname: "documents_knowledge_base_id_fkey", convalidated: false }]);
    await apply("admindb", second.name, "up");
    expect(await validated()).toEqual([{ conname: "check_owner", convalidated: true }, { conname: "documents_knowledge_base_id_fkey", convalidated: true }]);
    expect(await diff("admindb")).toEqual([]);
    await apply("admindb", second.name, "down");
    await apply("admindb", first.name, "down");
    expect(await validated()).toEqual([]);
    await apply("admindb", first.name, "up");
    await apply("admindb", second.name, "up");
    expect(await diff("admindb")).toEqual([]);
  });

  it("a mixed change is split into consecutive files in the right order; each down undoes its own part", async () => {
    await sql("admindb", `DROP TABLE login_logs`);
    await sql("admindb", `ALTER TABLE langchain_pg_embedding DROP COLUMN collection_id`);
    await sql("admindb", `ALTER TABLE langchain_pg_collection DROP CONSTRAINT langchain_pg_collection_name_key`);
    const typeormDiff = await diff("admindb");
    const uq = /ADD CONSTRAINT "(UQ_\w+)" UNIQUE/.exec(typeormDiff.join("\n"))![1]; // TypeORM's name for it
    const checked = (await generateMigrations(live.config, { dbs: ["admindb"], check: true })).databases[0];
    const r = await generate("Mixed", "admindb");
    expect(checked.up).toEqual(r.up); // --check shows what generate writes
    expect(r.warnings).toEqual([]);
    expect(r.migrations).toHaveLength(3);
    const [first, second, third] = r.migrations;
    const ts = Number(first.name.slice(-13));
    expect(r.migrations.map((m) => [m.name, m.transaction])).toEqual([[`Mixed${ts}`, true], [`Mixed${ts + 1}`, false], [`Mixed${ts + 2}`, true]]);
    expect(r.files).toEqual(r.migrations.map((m) => m.file));
    r.migrations.forEach((m, k) => expect(m.file).toMatch(new RegExp(`admindb/${ts + k}-Mixed\\.ts$`)));
    expect(first.up).toEqual([
      expect.stringMatching(/^CREATE TABLE "login_logs" /),
      `CREATE INDEX "idx_login_logs_created_at" ON "login_logs"  ("created_at") `, // a new, empty table: plain, in the transaction
      `CREATE INDEX "idx_login_logs_user_id" ON "login_logs"  ("user_id") `,
      `ALTER TABLE "langchain_pg_embedding" ADD "collection_id" uuid`, // first: the index in the next file is on it
      `ALTER TABLE "langchain_pg_embedding" ADD CONSTRAINT "langchain_pg_embedding_collection_id_fkey" FOREIGN KEY ("collection_id") REFERENCES "langchain_pg_collection"("uuid") ON DELETE CASCADE ON UPDATE NO ACTION NOT VALID`,
    ]);
    expect(first.down).toEqual([
      `ALTER TABLE "langchain_pg_embedding" DROP CONSTRAINT "langchain_pg_embedding_collection_id_fkey"`,
      `ALTER TABLE "langchain_pg_embedding" DROP COLUMN "collection_id"`,
      `DROP INDEX "public"."idx_login_logs_user_id"`,
      `DROP INDEX "public"."idx_login_logs_created_at"`,
      `DROP TABLE "login_logs"`,
    ]);
    expect(second.up).toEqual([
      `DROP INDEX CONCURRENTLY IF EXISTS "${uq}"`,
      `CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS "${uq}" ON "langchain_pg_collection" ("name")`,
      `DROP INDEX CONCURRENTLY IF EXISTS "public"."langchain_pg_embedding_collection_id_idx"`,
      `CREATE INDEX CONCURRENTLY IF NOT EXISTS "langchain_pg_embedding_collection_id_idx" ON "langchain_pg_embedding"  ("collection_id") `,
    ]);
    expect(second.down).toEqual([`DROP INDEX CONCURRENTLY IF EXISTS "public"."langchain_pg_embedding_collection_id_idx"`, `DROP INDEX CONCURRENTLY IF EXISTS "${uq}"`]);
    expect(third.up).toEqual([
      `ALTER TABLE "langchain_pg_embedding" VALIDATE CONSTRAINT "langchain_pg_embedding_collection_id_fkey"`,
      `ALTER TABLE "langchain_pg_collection" ADD CONSTRAINT "${uq}" UNIQUE USING INDEX "${uq}"`,
    ]);
    expect(third.down).toEqual([`ALTER TABLE "langchain_pg_collection" DROP CONSTRAINT "${uq}"`]);
    const text = (m: { file?: string }) => fs.readFileSync(m.file!, "utf8");
    expect(text(first)).toContain(`// Mixed, part 1 of 3 (with Mixed${ts + 1} and Mixed${ts + 2}), in a transaction.`);
    expect(text(second)).toMatch(/\/\/ Mixed, part 2 of 3 .*outside a transaction\.\n\/\/ transaction = false: /);
    expect(text(third)).toContain("// Runs last, in its own transaction:\n// - VALIDATE CONSTRAINT checks the existing rows");
    expect(loadMigrationFiles(live.copy.root, "admindb").slice(-3).map((f) => f.name)).toEqual(r.migrations.map((m) => m.name));

    await live.sql("admindb", `INSERT INTO langchain_pg_collection (name) VALUES ('second')`);
    for (const m of r.migrations) await apply("admindb", m.name, "up");
    expect(await diff("admindb")).toEqual([]);
    for (const m of [...r.migrations].reverse()) await apply("admindb", m.name, "down");
    expect(await diff("admindb")).toEqual(typeormDiff); // back where it was
    for (const m of r.migrations) await apply("admindb", m.name, "up");
    expect(await diff("admindb")).toEqual([]);
  });

  it("the concurrent part runs again after a failed build: the INVALID index left behind is replaced", async () => {
    await sql("admindb", `DROP INDEX idx_system_logs_level`);
    await sql("admindb", `INSERT INTO system_logs (service_name, level, message) VALUES ('api', 'info', 'a'), ('api', 'info', 'b')`);
    const r = await generate("SystemLogsLevel", "admindb");
    const [m] = r.migrations;
    expect(m.transaction).toBe(false);
    // What a failed run leaves: an INVALID index under the name (here a unique build that met duplicates).
    await expect(sql("admindb", `CREATE UNIQUE INDEX CONCURRENTLY idx_system_logs_level ON system_logs (level)`)).rejects.toThrow(/could not create unique index/);
    const index = async () => (await sql("admindb", `SELECT i.indisvalid, i.indisunique FROM pg_index i WHERE i.indexrelid = 'idx_system_logs_level'::regclass`)).rows;
    expect(await index()).toEqual([{ indisvalid: false, indisunique: true }]);
    await apply("admindb", m.name, "up");
    expect(await index()).toEqual([{ indisvalid: true, indisunique: false }]);
    expect(await diff("admindb")).toEqual([]);
  });

  it("a DROP COLUMN is refused unless named with --drop; named, its values are counted", async () => {
    await sql("apidb", `ALTER TABLE profiles ADD COLUMN nickname text; CREATE INDEX idx_profiles_nickname ON profiles (nickname)`);
    await sql("apidb", `UPDATE profiles SET nickname = 'n' || id WHERE name <> 'name 3'`);
    await expect(generate("DropNickname", "apidb")).rejects.toThrow(/^profiles\.nickname would be dropped with its values: say --drop profiles\.nickname to delete it on purpose$/);
    const r = await generate("DropNickname", "apidb", { drops: ["profiles.nickname"] });
    // A contract alone: the column stays until migration:complete (old services may still read it).
    expect(r.migrations.map((m) => [m.phase, m.transaction])).toEqual([["contract", false]]);
    const [m] = r.migrations;
    expect(r.warnings).toEqual([`apidb: profiles.nickname: 199 values will be dropped (by migration:complete: the column stays until the old services are gone)`]);
    const nicknames = async () => (await sql("apidb", `SELECT count(nickname)::int AS n FROM profiles`)).rows[0].n;
    const indexes = async () => (await sql("apidb", `SELECT indexname FROM pg_indexes WHERE tablename = 'profiles' AND indexname = 'idx_profiles_nickname'`)).rows;
    await apply("apidb", m.name, "up");
    expect(await diff("apidb")).toEqual([]);
    expect(await indexes()).toEqual([]);
    await apply("apidb", m.name, "down"); // the column back, empty (its drop was named), with its index
    expect(await nicknames()).toBe(0);
    expect(await indexes()).toEqual([{ indexname: "idx_profiles_nickname" }]);
    await apply("apidb", m.name, "up");
  });
});

describe("an edited entity: the generated migrations leave migration:check clean", () => {
  const live = liveDatabases("online_entity", ["apidb"]);

  it("a new column with an index: the column in a transaction, the index CONCURRENTLY after; no drift", async () => {
    await live.sql("apidb", `INSERT INTO profiles (user_id) SELECT gen_random_uuid() FROM generate_series(1, 100)`);
    // The edit a developer makes (kept in this file: jest gives every test file its own entities).
    Column("varchar", { name: "nickname", length: 40, nullable: true })(Profile.prototype, "nickname");
    Index("idx_profiles_nickname", ["nickname"])(Profile);
    const report = await generateMigrations(live.config, { name: "AddNickname", dbs: ["apidb"], timestamp: 1795700000000 });
    const [first, second] = report.databases[0].migrations;
    expect(report.databases[0].migrations).toHaveLength(2);
    expect(first).toMatchObject({ name: "AddNickname1795700000000", transaction: true, up: [`ALTER TABLE "profiles" ADD "nickname" character varying(40)`] });
    expect(second).toMatchObject({ name: "AddNickname1795700000001", transaction: false, up: [
      `DROP INDEX CONCURRENTLY IF EXISTS "public"."idx_profiles_nickname"`,
      `CREATE INDEX CONCURRENTLY IF NOT EXISTS "idx_profiles_nickname" ON "profiles"  ("nickname") `,
    ] });
    expect(report.warnings).toEqual([]);

    const ds = await openDataSource(live.config.targets.apidb, 5000); // built after the edit: sees the new column
    try {
      for (const file of loadMigrationFiles(live.copy.root, "apidb").slice(-2)) {
        await applyMigration(ds, file, "up", { runId: "test", command: "test", timeouts: DEFAULT_TIMEOUTS });
      }
      expect((await schemaDiff(ds)).up).toEqual([]);
    } finally {
      await ds.destroy();
    }
    const check = await checkDatabases(live.config, ["apidb"]);
    expect(check.databases[0]).toEqual({ db: "apidb", entityDrift: [], historyDrift: [], schemaDrift: [], pending: [], managedByMigrations: [] });
    expect(check.ok).toBe(true);
  });
});
