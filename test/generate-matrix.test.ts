// The conformance matrix of migration:generate: one case per kind of entity change, on real
// PostgreSQL with rows in every table. Each case edits the entities the way a developer would (in
// TypeORM's metadata, undone after the case), then: generate (the SQL it writes, or its refusal),
// lint (the deploy's own), migration:rehearse (up, down, up on a copy), migration:run, migration:check clean, `generate --check` empty, and
// migration:revert, then up and down again (a rehearsal's up -> down -> up), with the values of the
// columns that must survive compared by count and md5 before, after each run and after each revert. README.md's matrix table is this file's summary.
import * as fs from "fs";
import { Check, Column, CreateDateColumn, Entity, getMetadataArgsStorage, Index, JoinColumn, ManyToOne, PrimaryGeneratedColumn, Unique } from "typeorm";
import { ENTITIES as entities } from "../src/postgres/data-source";
import { checkDatabases } from "../src/commands/check";
import { generateMigrations, GenerateOptions } from "../src/commands/generate";
import { lintMigrations } from "../src/commands/lint";
import { rehearseMigrations } from "../src/commands/rehearse";
import { revertMigrations } from "../src/commands/revert";
import { runMigrations } from "../src/commands/run";
import { loadConfig } from "../src/config";
import type { DbName } from "../src/databases";
import { Document, LangchainEmbedding, LoginLog, SystemLog } from "../src/entities/admindb";
import { Profile } from "../src/entities/apidb";
import { User } from "../src/entities/authdb";
import { DEFAULT_TIMEOUTS } from "../src/runner/migrator";
import { testDatabases, withClient } from "./support/databases";
import { copyMigrations } from "./support/migrations-dir";

const storage = getMetadataArgsStorage();
const LISTS = ["tables", "columns", "indices", "uniques", "checks", "relations", "joinColumns", "exclusions"] as const;
type Snapshot = Record<(typeof LISTS)[number], unknown[]>;
const snapshot = (): Snapshot => Object.fromEntries(LISTS.map((k) => [k, [...(storage[k] as unknown[])]])) as Snapshot;
const restore = (snap: Snapshot) => LISTS.forEach((k) => (storage[k] as unknown[]).splice(0, (storage[k] as unknown[]).length, ...snap[k]));

/** Entity edits as a developer makes them, without touching the objects the snapshot holds. */
const edit = {
  column(target: Function, property: string, options: Record<string, unknown>) {
    const i = storage.columns.findIndex((c) => c.target === target && c.propertyName === property);
    if (i < 0) throw new Error(`no column ${property}`);
    storage.columns[i] = { ...storage.columns[i], options: { ...storage.columns[i].options, ...options } };
  },
  add(target: Function, property: string, options: Record<string, unknown>) {
    Column(options)(target.prototype, property);
  },
  remove(target: Function, property: string) {
    const i = storage.columns.findIndex((c) => c.target === target && c.propertyName === property);
    storage.columns.splice(i, 1);
  },
  table(target: Function, name: string) {
    const i = storage.tables.findIndex((t) => t.target === target);
    storage.tables[i] = { ...storage.tables[i], name };
  },
};

const dbs = testDatabases("matrix");
const copy = copyMigrations();
const config = loadConfig({ ...dbs.env, MIGRATIONS_DIR: copy.root });
const sql = (db: DbName, text: string, params?: unknown[]) => withClient(dbs.names[db], (c) => c.query(text, params));
const deploy = { backup: false, timeouts: DEFAULT_TIMEOUTS, lockTimeoutMs: 10_000 };
let timestamp = 1796000000000;

/** count + md5 of a column's values (or a table's rows), in primary key order: what must survive. */
async function fingerprint(db: DbName, table: string, expression: string): Promise<{ n: number; md5: string }> {
  const key = table === "langchain_pg_embedding" ? "uuid" : "id";
  const { rows } = await sql(db, `SELECT count(*)::int AS n, md5(coalesce(string_agg(coalesce((${expression})::text, 'NULL'), ',' ORDER BY "${key}"), '')) AS md5 FROM "${table}"`);
  return rows[0];
}

beforeAll(async () => {
  const r = await runMigrations(config, { dbs: ["authdb", "apidb", "admindb"], ...deploy });
  if (r.status !== "applied") throw new Error(`setup run: ${r.status}`);
  // Rows in every table.
  await sql("authdb", `INSERT INTO users (email, password_hash, login_attempts) SELECT 'u' || g || '@x', 'h', g % 5 FROM generate_series(1, 300) g`);
  await sql("apidb", `INSERT INTO profiles (user_id, name, address, phone, first_name, last_name)
    SELECT gen_random_uuid(), 'name ' || g, 'addr ' || g, '+81-' || lpad(g::text, 8, '0'), 'f' || g, 'l' || g FROM generate_series(1, 300) g`);
  await sql("admindb", `
    INSERT INTO system_logs (service_name, level, message) SELECT 'api', 'info', 'm' || g FROM generate_series(1, 200) g;
    INSERT INTO login_logs (user_id, ip_address, success) SELECT gen_random_uuid(), '10.0.0.' || (g % 250), g % 3 = 0 FROM generate_series(1, 200) g;
    INSERT INTO knowledge_bases (id, name, user_id) VALUES ('11111111-1111-1111-1111-111111111111', 'kb', gen_random_uuid());
    INSERT INTO documents (knowledge_base_id, filename, original_filename, file_path, mime_type, file_size)
      SELECT '11111111-1111-1111-1111-111111111111', 'f' || g, 'f', '/p', 'text/plain', g FROM generate_series(1, 200) g;
    INSERT INTO langchain_pg_collection (name) VALUES ('c1');
    INSERT INTO langchain_pg_embedding (document, custom_id, embedding)
      SELECT 'd' || g, 'c-' || g, array_fill(g::real / 1000, ARRAY[768])::vector FROM generate_series(1, 100) g;`);
});

afterAll(async () => {
  copy.remove();
  await dbs.drop();
});

interface Values {
  table: string;
  before: string;
  /** The run drops them (named with --drop): nothing to compare after it. */
  dropped?: boolean;
  /** Where the values are after the run (a renamed column, a renamed table). */
  after?: string;
  afterTable?: string;
}

interface Case {
  db: DbName;
  /** Runs before the entities are edited (e.g. data the change needs). */
  prepare?: string;
  change(): void;
  named?: Pick<GenerateOptions, "renames" | "drops">;
  /** generate refuses, with this line; nothing is written. */
  refused?: RegExp;
  /** What the generated up must contain (each a statement, in order). */
  writes?: Array<string | RegExp>;
  /** Warnings generate must print (each matches one). */
  warns?: RegExp[];
  /** Lint findings the deploy refuses (generate printed why): the run then needs --unsafe. */
  lintRefuses?: string[];
  /** Expand/contract files written after the in-place ones (`expand`, `contract`): run, then complete. */
  phases?: Array<"expand" | "contract">;
  values?: Values;
  /** After the revert, what the values must be (default: as before). */
  afterRevert?: "same" | "gone";
}

async function runCase(c: Case): Promise<void> {
  const snap = snapshot();
  const before = new Set(fs.readdirSync(`${copy.root}/${c.db}`));
  const written = () => fs.readdirSync(`${copy.root}/${c.db}`).filter((f) => !before.has(f));
  let applied = 0; // deploy runs of this case still applied (run, then complete)
  // migration:run, then migration:complete when it held a contract back: the two-phase deploy.
  const deployAll = async () => {
    const run = await runMigrations(config, { dbs: [c.db], ...deploy, unsafe: !!c.lintRefuses?.length });
    expect(run.failure).toBeUndefined();
    if (run.status === "applied") applied++;
    expect(run.databases[0].held ?? []).toEqual(c.phases?.includes("contract") ? [expect.stringMatching(/^Change\d{13}$/)] : []);
    if (!c.phases?.includes("contract")) return expect(run.status).toBe("applied");
    const complete = await runMigrations(config, { dbs: [c.db], ...deploy, phase: "contract", contractIdle: config.evolve.contractIdle });
    expect(complete.failure).toBeUndefined();
    expect(complete.status).toBe("applied");
    applied++;
  };
  try {
    if (c.prepare) await sql(c.db, c.prepare);
    const values = c.values && (await fingerprint(c.db, c.values.table, c.values.before));
    c.change();
    timestamp += 10;
    const generate = () => generateMigrations(config, { name: "Change", dbs: [c.db], timestamp, ...c.named });
    if (c.refused) {
      await expect(generate()).rejects.toThrow(c.refused);
      expect(written()).toEqual([]);
      return;
    }
    const report = await generate();
    const result = report.databases[0];
    expect(result.changed).toBe(true);
    expect(result.migrations.filter((m) => m.phase).map((m) => m.phase)).toEqual(c.phases ?? []);
    const up = result.up;
    let at = 0;
    for (const w of c.writes ?? []) {
      const k = up.findIndex((s, i) => i >= at && (typeof w === "string" ? s.trim() === w : w.test(s)));
      if (k < 0) throw new Error(`generated up lacks ${w} (after statement ${at}):\n${up.join("\n")}`);
      at = k + 1;
    }
    for (const w of c.warns ?? []) expect(result.warnings.some((line) => w.test(line))).toBe(true);

    const lint = await lintMigrations(config, { dbs: [c.db] });
    expect(lint.databases[0].findings.map((f) => f.rule).sort()).toEqual([...(c.lintRefuses ?? [])].sort());

    // migration:rehearse: up, down and up again on a scratch copy of the database, rows included.
    const rehearsal = await rehearseMigrations(config, { dbs: [c.db], timeouts: DEFAULT_TIMEOUTS });
    expect(rehearsal.failure).toBeUndefined();
    expect(rehearsal.databases.map((d) => [d.sameSchemaAfterDownUp, d.downRestoresSchema])).toEqual([[true, true]]);

    await deployAll();
    const check = await checkDatabases(config, [c.db]);
    expect(check.databases[0]).toMatchObject({ entityDrift: [], historyDrift: [], schemaDrift: [], pending: [] });
    const again = await generateMigrations(config, { dbs: [c.db], check: true });
    expect(again.databases[0].changed).toBe(false);
    if (c.values && values && !c.values.dropped) {
      expect(await fingerprint(c.db, c.values.afterTable ?? c.values.table, c.values.after ?? c.values.before)).toEqual(values);
    }

    // Down, then up again (what migration:rehearse does on a copy), then down for the next case.
    const revert = async () => {
      while (applied > 0) {
        const r = await revertMigrations(config, { target: { kind: "last-run" }, ...deploy });
        applied--;
        expect(r.failure).toBeUndefined();
        expect(r.status).toBe("reverted");
      }
      if (c.values && values) {
        const back = await fingerprint(c.db, c.values.table, c.values.before);
        if (c.afterRevert === "gone") expect(back.md5).not.toEqual(values.md5);
        else expect(back).toEqual(values);
      }
    };
    await revert();
    await deployAll();
    expect((await generateMigrations(config, { dbs: [c.db], check: true })).databases[0].changed).toBe(false);
    await revert();
    for (const f of written()) fs.rmSync(`${copy.root}/${c.db}/${f}`);
    restore(snap);
    // Back where it was: the original entities match the database again.
    expect((await generateMigrations(config, { dbs: [c.db], check: true })).databases[0].changed).toBe(false);
  } finally {
    // A case that failed half way must not leave its change behind for the next one.
    for (; applied > 0; applied--) await revertMigrations(config, { target: { kind: "last-run" }, ...deploy }).catch(() => undefined);
    restore(snap);
    for (const f of written()) fs.rmSync(`${copy.root}/${c.db}/${f}`);
  }
}

describe("generate: the conformance matrix", () => {
  it("add a nullable column", () => runCase({
    db: "apidb",
    change: () => edit.add(Profile, "nickname", { type: "varchar", length: 40, nullable: true }),
    writes: [`ALTER TABLE "profiles" ADD "nickname" character varying(40)`],
    values: { table: "profiles", before: "phone" },
  }));

  it("add a NOT NULL column with a default", () => runCase({
    db: "apidb",
    change: () => edit.add(Profile, "visits", { type: "integer", default: 0 }),
    writes: [`ALTER TABLE "profiles" ADD "visits" integer NOT NULL DEFAULT '0'`],
  }));

  it("add a NOT NULL column without a default to a table with rows: refused", () => runCase({
    db: "apidb",
    change: () => edit.add(Profile, "birthDate", { type: "date", name: "birth_date" }),
    refused: /^profiles\.birth_date: a NOT NULL column without a default cannot be added to profiles \(300 rows\): give it a default/,
  }));

  it("drop a column: refused unless named with --drop", () => runCase({
    db: "apidb",
    change: () => edit.remove(Profile, "lastName"),
    refused: /^profiles\.last_name would be dropped with its values: say --drop profiles\.last_name to delete it on purpose$/,
  }));

  // The table's last column: its revert adds it back at the same position, so the later cases'
  // migration:check (which compares column order too) starts from the schema the migrations build.
  it("drop a column with --drop: its values counted, revert brings the column back (empty: the drop was named)", () => runCase({
    db: "apidb",
    change: () => edit.remove(Profile, "lastName"),
    named: { drops: ["profiles.last_name"] },
    phases: ["contract"], // migration:run leaves the column to the old services; migration:complete drops it
    warns: [/^apidb: profiles\.last_name: 300 values will be dropped \(by migration:complete/],
    values: { table: "profiles", before: "last_name", dropped: true },
    afterRevert: "gone",
  }));

  it("rename a column with another change in the same table: refused unnamed, named keeps every value both ways", async () => {
    const change = () => {
      edit.column(Profile, "phone", { name: "phone_number" });
      edit.add(Profile, "birthDate", { type: "date", name: "birth_date", nullable: true });
    };
    await runCase({ db: "apidb", change, refused: /^profiles\.phone would be dropped and profiles\.(phone_number|birth_date), profiles\.(phone_number|birth_date) added: if it is a rename say --rename profiles\.phone=\w+; to delete it say --drop profiles\.phone$/ });
    await runCase({
      db: "apidb", change, named: { renames: ["profiles.phone=phone_number"] },
      writes: [`ALTER TABLE "profiles" ADD "birth_date" date`],
      phases: ["expand", "contract"], // both names work until migration:complete
      warns: [/^apidb: profiles\.phone is renamed to phone_number in two phases \(values kept\)/],
      values: { table: "profiles", before: "phone", after: "phone_number" },
    });
  });

  it("a rename TypeORM guesses on its own is not trusted", () => runCase({
    db: "apidb",
    change: () => edit.column(Profile, "phone", { name: "phone_number" }),
    refused: /^TypeORM reads profiles\.phone -> profiles\.phone_number as a rename, which is not trusted: say --rename profiles\.phone=phone_number/,
  }));

  it("drop one column and add another of another type: never read as a rename with a cast; --drop as the refusal says", async () => {
    const change = () => {
      edit.remove(Profile, "address");
      edit.add(Profile, "birthDate", { type: "date", name: "birth_date", nullable: true });
    };
    // TypeORM reads it as a rename with a USING "address"::date cast: not trusted, both ways out named.
    await runCase({ db: "apidb", change,
      refused: /^TypeORM reads profiles\.address -> profiles\.birth_date as a rename, which is not trusted: say --rename profiles\.address=birth_date to rename it \(values kept\), or --drop profiles\.address to delete it$/ });
    await runCase({ db: "apidb", change, named: { drops: ["profiles.address"] },
      writes: [`ALTER TABLE "profiles" ADD "birth_date" date`], phases: ["contract"],
      values: { table: "profiles", before: "address", dropped: true }, afterRevert: "gone" });
  });

  it("rename a table", () => runCase({
    db: "admindb",
    change: () => edit.table(LoginLog, "user_login_logs"),
    named: { renames: ["login_logs=user_login_logs"] },
    writes: [`ALTER TABLE "login_logs" RENAME TO "user_login_logs"`],
    values: { table: "login_logs", before: `user_id::text || ip_address || success`, afterTable: "user_login_logs" },
  }));

  it("widening type change varchar(255) -> varchar(400): in place, no rewrite (accepted in the file)", () => runCase({
    db: "admindb",
    change: () => edit.column(LangchainEmbedding, "customId", { length: 400 }),
    writes: [`ALTER TABLE "langchain_pg_embedding" ALTER COLUMN "custom_id" TYPE character varying(400)`],
    values: { table: "langchain_pg_embedding", before: "custom_id" },
  }));

  it("widening type change int -> bigint: it would rewrite the table, so two phases; values kept both ways", () => runCase({
    db: "authdb",
    change: () => edit.column(User, "loginAttempts", { type: "bigint" }),
    phases: ["expand", "contract"],
    warns: [/^authdb: users\.login_attempts: integer -> bigint in two phases/],
    values: { table: "users", before: "login_attempts" },
  }));

  it("a type change that also changes the default: two phases; the revert puts the old default back", () => runCase({
    db: "authdb",
    change: () => edit.column(User, "loginAttempts", { type: "bigint", default: 1 }),
    phases: ["expand", "contract"],
    values: { table: "users", before: "login_attempts" },
  }));

  it("a column with constraints or indexes, or a type without =: renamed or retyped in place, said why", async () => {
    await runCase({
      db: "apidb", change: () => edit.column(Profile, "userId", { name: "owner_id" }), named: { renames: ["profiles.user_id=owner_id"] },
      writes: [`ALTER TABLE "profiles" RENAME COLUMN "user_id" TO "owner_id"`],
      warns: [/^apidb: profiles\.user_id is renamed to owner_id in place \(two phases cannot carry it: its constraints \(profiles_user_id_key\) would go with the old column\)/],
      values: { table: "profiles", before: "user_id", after: "owner_id" },
    });
    await runCase({
      db: "admindb", change: () => edit.column(SystemLog, "logMetadata", { name: "metadata" }), named: { renames: ["system_logs.log_metadata=metadata"] },
      writes: [`ALTER TABLE "system_logs" RENAME COLUMN "log_metadata" TO "metadata"`],
      warns: [/its type has no = to compare old and new values/],
    });
    await runCase({
      db: "authdb", change: () => edit.column(User, "email", { type: "varchar", length: 255 }),
      writes: [/ALTER COLUMN "email" TYPE character varying\(255\)/],
      warns: [/^authdb: users\.email: text -> varchar\(255\) rewrites users under ACCESS EXCLUSIVE, in place \(two phases cannot carry it: its constraints \(users_email_key\)/],
      lintRefuses: ["changing-column-type"],
      values: { table: "users", before: "email" },
    });
  });

  it("dropping a NOT NULL column without a default: refused (the new version could not insert while it waits)", () => runCase({
    db: "authdb",
    change: () => edit.remove(User, "passwordHash"),
    named: { drops: ["users.password_hash"] },
    refused: /^--drop users\.password_hash: users\.password_hash is NOT NULL without a default, so the new version could not insert rows while it waits for migration:complete: make it nullable first/,
  }));

  it("narrowing type change text -> varchar(40): two phases, values kept both ways", () => runCase({
    db: "apidb",
    change: () => edit.column(Profile, "name", { type: "varchar", length: 40 }),
    phases: ["expand", "contract"],
    warns: [/profiles\.name: text -> varchar\(40\) in two phases/],
    values: { table: "profiles", before: "name" },
  }));

  it("cast type change text -> date: two phases (the backfill casts), values kept both ways", () => runCase({
    db: "apidb",
    prepare: `UPDATE profiles SET address = (date '2024-01-01' + (abs(hashtext(id::text)) % 300))::text`,
    change: () => edit.column(Profile, "address", { type: "date" }),
    phases: ["expand", "contract"],
    values: { table: "profiles", before: "address::text" },
  }));

  it("cast type change text -> date over values that are no dates: refused with the count", () => runCase({
    db: "apidb",
    prepare: `UPDATE profiles SET address = 'addr ' || name WHERE name LIKE 'name 1%'`,
    change: () => edit.column(Profile, "address", { type: "date" }),
    refused: /^profiles\.address: \d+ values do not convert text -> date unchanged: change those rows first/,
  }));

  it("vector dimension change on a table with rows: refused, with what to do instead", () => runCase({
    db: "admindb",
    change: () => edit.column(LangchainEmbedding, "embedding", { length: 1024 }),
    refused: /^langchain_pg_embedding\.embedding: vector\(768\) -> vector\(1024\) cannot convert its 100 values \(no cast changes a vector's dimensions\): add a new vector\(1024\) column, re-embed/,
  }));

  it("SET NOT NULL: CHECK NOT VALID, then VALIDATE, SET NOT NULL and DROP CONSTRAINT; no lint finding", () => runCase({
    db: "apidb",
    prepare: `UPDATE profiles SET name = 'unnamed' WHERE name IS NULL`,
    change: () => edit.column(Profile, "name", { nullable: false }),
    writes: [
      `ALTER TABLE "profiles" ADD CONSTRAINT "profiles_name_not_null" CHECK ("name" IS NOT NULL) NOT VALID`,
      `ALTER TABLE "profiles" VALIDATE CONSTRAINT "profiles_name_not_null"`,
      `ALTER TABLE "profiles" ALTER COLUMN "name" SET NOT NULL`,
      `ALTER TABLE "profiles" DROP CONSTRAINT "profiles_name_not_null"`,
    ],
    values: { table: "profiles", before: "name" },
  }));

  it("SET NOT NULL over NULLs: refused with the count", () => runCase({
    db: "apidb",
    prepare: `UPDATE profiles SET first_name = NULL WHERE name LIKE 'name 2%'`,
    change: () => edit.column(Profile, "firstName", { nullable: false }),
    refused: /^profiles\.first_name: \d+ rows are NULL, so it cannot become NOT NULL/,
  }));

  it("DROP NOT NULL", () => runCase({
    db: "admindb",
    change: () => edit.column(Document, "filename", { nullable: true }),
    writes: [`ALTER TABLE "documents" ALTER COLUMN "filename" DROP NOT NULL`],
    values: { table: "documents", before: "filename" },
  }));

  it("default change", () => runCase({
    db: "admindb",
    change: () => edit.column(Document, "status", { default: "new" }),
    writes: [`ALTER TABLE "documents" ALTER COLUMN "status" SET DEFAULT 'new'`],
    values: { table: "documents", before: "status" },
  }));

  it("add an index: CONCURRENTLY, outside a transaction", () => runCase({
    db: "admindb",
    change: () => Index("idx_documents_mime_type", ["mimeType"])(Document),
    writes: [/^CREATE INDEX CONCURRENTLY IF NOT EXISTS "idx_documents_mime_type" ON "documents"/],
  }));

  it("drop an index: CONCURRENTLY, announced", () => runCase({
    db: "admindb",
    change: () => {
      const i = storage.indices.findIndex((x) => x.target === Document && x.name === "idx_documents_category");
      storage.indices.splice(i, 1);
    },
    writes: [`DROP INDEX CONCURRENTLY IF EXISTS "public"."idx_documents_category"`],
    warns: [/^admindb: index idx_documents_category is dropped: no entity declares it/],
  }));

  it("a duplicate index is named and not written", async () => {
    const snap = snapshot();
    try {
      Index(["status"])(Document);
      const r = await generateMigrations(config, { name: "Dup", dbs: ["admindb"], check: true });
      expect(r.databases[0].changed).toBe(false);
      expect(r.databases[0].up).toEqual([]);
      expect(r.databases[0].duplicates).toEqual([expect.stringMatching(/^IDX_\w+ duplicates idx_documents_status$/)]);
      expect(r.warnings).toEqual([expect.stringMatching(/^admindb: IDX_\w+ duplicates idx_documents_status: not written$/)]);
    } finally {
      restore(snap);
    }
  });

  it("unique constraint: a unique index CONCURRENTLY, then the constraint USING it", () => runCase({
    db: "admindb",
    change: () => Unique("documents_filename_key", ["filename"])(Document),
    writes: [/^CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS "UQ_\w+" ON "documents" \("filename"\)$/, /^ALTER TABLE "documents" ADD CONSTRAINT "UQ_\w+" UNIQUE USING INDEX "UQ_\w+"$/],
  }));

  it("check constraint: NOT VALID, then VALIDATE", () => runCase({
    db: "apidb",
    change: () => Check("profiles_phone_length", `length("phone") <= 40`)(Profile),
    writes: [/ADD CONSTRAINT "profiles_phone_length" CHECK .* NOT VALID$/, `ALTER TABLE "profiles" VALIDATE CONSTRAINT "profiles_phone_length"`],
  }));

  it("foreign key on an existing table without orphans: NOT VALID, then VALIDATE", () => runCase({
    db: "admindb",
    prepare: `UPDATE documents SET edited_by = id WHERE filename LIKE 'f2%'`,
    change: () => {
      ManyToOne(() => Document, { onDelete: "SET NULL", nullable: true })(Document.prototype, "editor");
      JoinColumn({ name: "edited_by", foreignKeyConstraintName: "documents_edited_by_fkey" })(Document.prototype, "editor");
    },
    writes: [/ADD CONSTRAINT "documents_edited_by_fkey" FOREIGN KEY \("edited_by"\) REFERENCES "documents"\("id"\) .* NOT VALID$/, `ALTER TABLE "documents" VALIDATE CONSTRAINT "documents_edited_by_fkey"`],
    values: { table: "documents", before: "edited_by" },
  }));

  it("foreign key over orphans: the run fails with PostgreSQL's detail line (which key), and is undone", async () => {
    await sql("admindb", `UPDATE documents SET edited_by = '22222222-2222-2222-2222-222222222222' WHERE filename = 'f3'`);
    const snap = snapshot();
    const before = new Set(fs.readdirSync(`${copy.root}/admindb`));
    try {
      ManyToOne(() => Document, { onDelete: "SET NULL", nullable: true })(Document.prototype, "editor");
      JoinColumn({ name: "edited_by", foreignKeyConstraintName: "documents_edited_by_fkey" })(Document.prototype, "editor");
      timestamp += 10;
      await generateMigrations(config, { name: "Fk", dbs: ["admindb"], timestamp });
      const run = await runMigrations(config, { dbs: ["admindb"], ...deploy });
      expect(run.status).toBe("failed");
      expect(run.failure?.message).toMatch(/violates foreign key constraint "documents_edited_by_fkey": Key \(edited_by\)=\(22222222-2222-2222-2222-222222222222\) is not present in table "documents"/);
      const { rows } = await sql("admindb", `SELECT count(*)::int AS n FROM pg_constraint WHERE conname = 'documents_edited_by_fkey'`);
      expect(rows).toEqual([{ n: 0 }]); // the NOT VALID part applied first was undone too
    } finally {
      restore(snap);
      for (const f of fs.readdirSync(`${copy.root}/admindb`).filter((f) => !before.has(f))) fs.rmSync(`${copy.root}/admindb/${f}`);
      await sql("admindb", `UPDATE documents SET edited_by = NULL`);
    }
  });

  it("enum: create, add a value (placed, down runs with a default and rows), remove a value", async () => {
    const priority = (values: string[]) => () => edit.add(Document, "priority", { type: "enum", enum: values, default: "normal" });
    // create
    await runCase({ db: "admindb", change: priority(["low", "normal", "high"]),
      writes: [`CREATE TYPE "public"."documents_priority_enum" AS ENUM('low', 'normal', 'high')`, /ADD "priority" "public"\."documents_priority_enum" NOT NULL DEFAULT 'normal'/] });
    // add a value, with the enum in place (applied for this case, reverted after)
    const snap = snapshot();
    priority(["low", "normal", "high"])();
    timestamp += 10;
    await generateMigrations(config, { name: "AddPriority", dbs: ["admindb"], timestamp });
    expect((await runMigrations(config, { dbs: ["admindb"], ...deploy })).status).toBe("applied");
    const base = snapshot();
    try {
      await sql("admindb", `UPDATE documents SET priority = 'high' WHERE filename LIKE 'f1%'`);
      await runCase({
        db: "admindb",
        change: () => edit.column(Document, "priority", { enum: ["low", "normal", "high", "urgent"] }),
        writes: [`ALTER TYPE "public"."documents_priority_enum" ADD VALUE 'urgent' AFTER 'high'`],
        values: { table: "documents", before: "priority" },
      });
      // A row holding the added value: the down refuses with one line, and changes nothing.
      timestamp += 10;
      edit.column(Document, "priority", { enum: ["low", "normal", "high", "urgent"] });
      await generateMigrations(config, { name: "Urgent", dbs: ["admindb"], timestamp });
      expect((await runMigrations(config, { dbs: ["admindb"], ...deploy })).status).toBe("applied");
      await sql("admindb", `UPDATE documents SET priority = 'urgent' WHERE filename = 'f7'`);
      const refused = await revertMigrations(config, { target: { kind: "last-run" }, ...deploy });
      expect(refused.failure?.message).toMatch(/documents\.priority: 1 rows hold a value this down removes from documents_priority_enum \(urgent\): change them first/);
      await sql("admindb", `UPDATE documents SET priority = 'high' WHERE filename = 'f7'`);
      expect((await revertMigrations(config, { target: { kind: "last-run" }, ...deploy })).status).toBe("reverted");
      restore(base);
      for (const f of fs.readdirSync(`${copy.root}/admindb`).filter((f) => f.endsWith("-Urgent.ts"))) fs.rmSync(`${copy.root}/admindb/${f}`);
      // remove a value: refused while rows hold it, then written
      await runCase({ db: "admindb", change: () => edit.column(Document, "priority", { enum: ["low", "normal"] }),
        refused: /^documents\.priority: \d+ rows hold high, which the entity removes from documents_priority_enum: change those rows first$/ });
      await sql("admindb", `UPDATE documents SET priority = 'normal' WHERE priority = 'high'`);
      await runCase({ db: "admindb", change: () => edit.column(Document, "priority", { enum: ["low", "normal"] }),
        writes: [`CREATE TYPE "public"."documents_priority_enum" AS ENUM('low', 'normal')`], lintRefuses: ["changing-column-type"],
        values: { table: "documents", before: "priority" } });
    } finally {
      restore(snap);
      expect((await revertMigrations(config, { target: { kind: "last-run" }, ...deploy })).status).toBe("reverted");
      for (const f of fs.readdirSync(`${copy.root}/admindb`).filter((f) => f.endsWith("-AddPriority.ts"))) fs.rmSync(`${copy.root}/admindb/${f}`);
    }
  });

  it("data loss is counted before it happens: run of a named drop, revert (and its dry run) of an added column", async () => {
    const snap = snapshot();
    let applied = false;
    const before = new Set(fs.readdirSync(`${copy.root}/apidb`));
    try {
      edit.add(Profile, "note", { type: "text", nullable: true });
      timestamp += 10;
      await generateMigrations(config, { name: "AddNote", dbs: ["apidb"], timestamp });
      expect((await runMigrations(config, { dbs: ["apidb"], ...deploy })).status).toBe("applied");
      await sql("apidb", `UPDATE profiles SET note = 'n' WHERE name NOT LIKE 'name 1%'`);
      const told: string[] = [];
      const dry = await revertMigrations(config, { target: { kind: "last-run" }, ...deploy, dryRun: true, onDataLoss: (db, lines) => told.push(...lines.map((l) => `${db}: ${l}`)) });
      expect(dry.databases.find((d) => d.db === "apidb")!.dataLoss).toEqual(["profiles.note: 189 values will be dropped"]);
      expect(told).toEqual(["apidb: profiles.note: 189 values will be dropped"]);
      const reverted = await revertMigrations(config, { target: { kind: "last-run" }, ...deploy });
      expect(reverted.status).toBe("reverted");
      expect(reverted.databases.find((d) => d.db === "apidb")!.dataLoss).toEqual(["profiles.note: 189 values will be dropped"]);
      for (const f of fs.readdirSync(`${copy.root}/apidb`).filter((f) => !before.has(f))) fs.rmSync(`${copy.root}/apidb/${f}`);
      restore(snap);

      // A drop: migration:run holds it back; migration:complete counts it, before it runs.
      await sql("apidb", `UPDATE profiles SET last_name = 'l-' || name`); // (an earlier case's revert left it empty)
      edit.remove(Profile, "lastName");
      timestamp += 10;
      await generateMigrations(config, { name: "DropLastName", dbs: ["apidb"], timestamp, drops: ["profiles.last_name"] });
      const run = await runMigrations(config, { dbs: ["apidb"], ...deploy });
      expect(run.status).toBe("nothing-to-do");
      expect(run.databases[0].held).toEqual([`DropLastName${timestamp}`]);
      const complete = await runMigrations(config, { dbs: ["apidb"], ...deploy, phase: "contract", contractIdle: config.evolve.contractIdle });
      applied = complete.status === "applied";
      expect(complete.databases[0].dataLoss).toEqual(["profiles.last_name: 300 values will be dropped"]);
      expect((await revertMigrations(config, { target: { kind: "last-run" }, ...deploy })).status).toBe("reverted");
      applied = false;
    } finally {
      if (applied) await revertMigrations(config, { target: { kind: "last-run" }, ...deploy }).catch(() => undefined);
      restore(snap);
      for (const f of fs.readdirSync(`${copy.root}/apidb`).filter((f) => !before.has(f))) fs.rmSync(`${copy.root}/apidb/${f}`);
    }
  });

  it("new table: uuid key, jsonb and array defaults, timestamptz", () => runCase({
    db: "admindb",
    change: () => {
      class Note {}
      Entity({ name: "notes" })(Note);
      PrimaryGeneratedColumn("uuid", { primaryKeyConstraintName: "notes_pkey" })(Note.prototype, "id");
      Column("jsonb", { default: () => "'{}'" })(Note.prototype, "meta");
      Column("text", { array: true, default: () => "'{}'" })(Note.prototype, "tags");
      CreateDateColumn({ name: "created_at", type: "timestamptz" })(Note.prototype, "createdAt");
      entities.admindb.push(Note);
    },
    writes: [/^CREATE TABLE "notes" \("id" uuid NOT NULL DEFAULT uuid_generate_v4\(\), "meta" jsonb NOT NULL DEFAULT '\{\}', "tags" text array NOT NULL DEFAULT '\{\}', "created_at" TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now\(\), CONSTRAINT "notes_pkey" PRIMARY KEY \("id"\)\)$/],
  }).finally(() => entities.admindb.splice(entities.admindb.findIndex((e) => e.name === "Note"), 1)));

  it("hand-written HNSW and partial indexes: kept through an unrelated generate, and managed by migrations in check (not drift)", async () => {
    timestamp += 10;
    const name = `AddSearchIndexes${timestamp}`;
    fs.writeFileSync(`${copy.root}/admindb/${timestamp}-AddSearchIndexes.ts`, `import { MigrationInterface, QueryRunner } from "typeorm";

export class ${name} implements MigrationInterface {
    name = "${name}";
    transaction = false;

    public async up(queryRunner: QueryRunner): Promise<void> {
        await queryRunner.query(\`CREATE INDEX CONCURRENTLY IF NOT EXISTS "idx_embedding_hnsw" ON "langchain_pg_embedding" USING hnsw ("embedding" vector_cosine_ops)\`);
        await queryRunner.query(\`CREATE INDEX CONCURRENTLY IF NOT EXISTS "idx_documents_public_recent" ON "documents" ("created_at") WHERE "is_public"\`);
    }

    public async down(queryRunner: QueryRunner): Promise<void> {
        await queryRunner.query(\`DROP INDEX CONCURRENTLY IF EXISTS "idx_documents_public_recent"\`);
        await queryRunner.query(\`DROP INDEX CONCURRENTLY IF EXISTS "idx_embedding_hnsw"\`);
    }
}
`);
    expect((await runMigrations(config, { dbs: ["admindb"], ...deploy })).status).toBe("applied");
    const check = await checkDatabases(config, ["admindb"]);
    expect(check.ok).toBe(true);
    expect(check.databases[0].managedByMigrations).toEqual([
      `idx_documents_public_recent on documents (partial), created by ${name}`,
      `idx_embedding_hnsw on langchain_pg_embedding (using hnsw, operator class), created by ${name}`,
    ]);
    await runCase({
      db: "admindb",
      change: () => edit.add(Document, "summary", { type: "text", nullable: true }),
      writes: [`ALTER TABLE "documents" ADD "summary" text`],
    });
    const { rows } = await sql("admindb", `SELECT indexname FROM pg_indexes WHERE indexname IN ('idx_embedding_hnsw', 'idx_documents_public_recent') ORDER BY 1`);
    expect(rows).toEqual([{ indexname: "idx_documents_public_recent" }, { indexname: "idx_embedding_hnsw" }]);
  });
});
