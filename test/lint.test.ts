// migration:lint: squawk over the SQL of pending (or all) migrations, with the rule set and the
// per-migration acceptances of src/safety/lint.ts. The core is called directly; the databases are real.
import * as fs from "fs";
import * as path from "path";
import { loadConfig } from "../src/config";
import { DATABASES, DbName } from "../src/databases";
import { lintMigrations, LintReport } from "../src/commands/lint";
import { readApplied } from "../src/runner/history";
import { loadMigrationFiles } from "../src/runner/migration-files";
import { checkLint, lintFailure, lintFiles, splitStatements, squawkBinary, squawkVersion, targetTable } from "../src/safety/lint";
import { lintLines } from "../scripts/print-lint";
import { testDatabases, withClient } from "./support/databases";
import { migratedWithCopy } from "./support/migrations-dir";

/** A migration file with statements for its up, and class members (e.g. `lint = {...}`, `transaction = false`). */
function writeMigration(root: string, db: DbName, name: string, timestamp: number, up: string[], members = ""): string {
  const file = path.join(root, db, `${timestamp}-${name}.ts`);
  fs.writeFileSync(file, `import { MigrationInterface, QueryRunner } from "typeorm";

export class ${name}${timestamp} implements MigrationInterface {
    ${members}

    public async up(queryRunner: QueryRunner): Promise<void> {
${up.map((sql) => `        await queryRunner.query(${JSON.stringify(sql)});`).join("\n")}
    }

    public async down(queryRunner: QueryRunner): Promise<void> {}
}
`);
  return file;
}

const RISKY = {
  "require-concurrent-index-creation": `CREATE INDEX "idx_profiles_name" ON "profiles" ("name")`,
  "adding-required-field": `ALTER TABLE "profiles" ADD "nickname" text NOT NULL`,
  "changing-column-type": `ALTER TABLE "profiles" ALTER COLUMN "phone" TYPE varchar(30)`,
  "ban-drop-column": `ALTER TABLE "profiles" DROP COLUMN "address"`,
  "ban-drop-table": `DROP TABLE "profiles"`,
} as const;

const rulesOf = (findings: Array<{ rule: string }>) => findings.map((f) => f.rule).sort();

describe("migration:lint on migrated databases (pending migrations)", () => {
  const { dbs, copy, env } = migratedWithCopy("lint");
  const config = () => loadConfig(env());
  const added: string[] = [];
  const add = (...args: Parameters<typeof writeMigration> extends [string, ...infer R] ? R : never) => {
    const file = writeMigration(copy().root, ...args);
    added.push(file);
    return file;
  };
  afterEach(() => {
    for (const f of added.splice(0)) fs.rmSync(f, { force: true });
  });

  it("flags a plain index, a NOT NULL column without default, a type change, DROP COLUMN and DROP TABLE on existing tables; changes nothing", async () => {
    let ts = 1795700000001;
    for (const [rule, sql] of Object.entries(RISKY)) add("apidb", `Risky${rule.replace(/(^|-)(\w)/g, (_, __, c: string) => c.toUpperCase())}`, ts++, [sql]);
    const before = await withClient(dbs.names.apidb, (c) => readApplied(c));

    const report = await lintMigrations(config(), { dbs: ["apidb"] });

    expect(report.ok).toBe(false);
    expect(report.scope).toBe("pending");
    const [apidb] = report.databases;
    expect(apidb.exists).toBe(true);
    expect(apidb.migrations).toHaveLength(5); // the applied Init is not linted
    expect(apidb.accepted).toEqual([]);
    // Each migration: exactly the rule it was written to break.
    for (const [rule, sql] of Object.entries(RISKY)) {
      const mine = apidb.findings.filter((f) => f.statement === sql);
      expect(mine.map((f) => f.rule)).toEqual([rule]);
      expect(mine[0]).toEqual(expect.objectContaining({ db: "apidb", line: 1, file: expect.stringMatching(/apidb\/17957000000\d\d-Risky\w+\.ts$/), message: expect.any(String) }));
    }
    expect(apidb.findings).toHaveLength(5);
    expect(await withClient(dbs.names.apidb, (c) => readApplied(c))).toEqual(before);
  });

  it("accepts each finding a migration accepts (lint = { ignore }), with its reason; the rest still fail", async () => {
    const ignore = Object.fromEntries(Object.keys(RISKY).map((rule) => [rule, `reviewed: ${rule} is fine here`]));
    add("apidb", "AcceptedRisks", 1795710000001, Object.values(RISKY), `lint = { ignore: ${JSON.stringify(ignore)} };`);

    const report = await lintMigrations(config(), { dbs: ["apidb"] });
    expect(report.ok).toBe(true);
    const [apidb] = report.databases;
    expect(apidb.findings).toEqual([]);
    expect(apidb.accepted.map((a) => [a.rule, a.reason, a.line])).toEqual([
      ["require-concurrent-index-creation", "reviewed: require-concurrent-index-creation is fine here", 1],
      ["adding-required-field", "reviewed: adding-required-field is fine here", 2],
      ["changing-column-type", "reviewed: changing-column-type is fine here", 3],
      ["ban-drop-column", "reviewed: ban-drop-column is fine here", 4],
      ["ban-drop-table", "reviewed: ban-drop-table is fine here", 5],
    ]);

    // Accepting one rule accepts only that one.
    add("apidb", "PartlyAccepted", 1795710000002, [RISKY["ban-drop-column"], RISKY["require-concurrent-index-creation"]], `lint = { ignore: { "ban-drop-column": "address moved to addresses in v2" } };`);
    const partly = (await lintMigrations(config(), { dbs: ["apidb"] })).databases[0];
    expect(rulesOf(partly.findings)).toEqual(["require-concurrent-index-creation"]);
    expect(partly.accepted.filter((a) => a.migration === "PartlyAccepted1795710000002").map((a) => a.reason)).toEqual(["address moved to addresses in v2"]);
  });

  it("an acceptance without a reason is a finding of its own, and accepts nothing", async () => {
    add("apidb", "NoReason", 1795720000001, [RISKY["ban-drop-column"]], `lint = { ignore: { "ban-drop-column": "  ", "changing-column-type": 42 } } as unknown as { ignore: Record<string, string> };`);
    const report = await lintMigrations(config(), { dbs: ["apidb"] });
    expect(report.ok).toBe(false);
    const [apidb] = report.databases;
    expect(rulesOf(apidb.findings)).toEqual(["ban-drop-column", "invalid-lint-acceptance", "invalid-lint-acceptance"]);
    expect(apidb.findings.filter((f) => f.rule === "invalid-lint-acceptance").map((f) => f.message)).toEqual([
      `lint.ignore["ban-drop-column"] has no reason: give a non-empty string saying why it is safe here`,
      `lint.ignore["changing-column-type"] has no reason: give a non-empty string saying why it is safe here`,
    ]);
    expect(apidb.accepted).toEqual([]);
  });

  it("ignores an index and a NOT NULL column on a table the same migration creates, in and outside a transaction", async () => {
    const newTable = [
      `CREATE TABLE "sessions" ("id" uuid NOT NULL, "token" text NOT NULL, CONSTRAINT "sessions_pkey" PRIMARY KEY ("id"))`,
      `CREATE INDEX "idx_sessions_token" ON "sessions" ("token")`,
      `ALTER TABLE "public"."sessions" ADD "user_id" uuid NOT NULL`,
      `ALTER TABLE "sessions" ADD CONSTRAINT "sessions_user_fk" FOREIGN KEY ("user_id") REFERENCES "users"("id")`,
    ];
    add("authdb", "AddSessions", 1795730000001, newTable);
    // Outside a transaction squawk itself does not know the table is new: our filter does.
    add("authdb", "AddTokens", 1795730000002, newTable.map((s) => s.replace(/sessions/g, "tokens")), "transaction = false;");
    // The same statements on a table created elsewhere are flagged.
    add("authdb", "IndexSessions", 1795730000003, [`CREATE INDEX "idx_sessions_user" ON "sessions" ("user_id")`]);

    const report = await lintMigrations(config(), { dbs: ["authdb"] });
    const [authdb] = report.databases;
    expect(authdb.migrations).toEqual(["AddSessions1795730000001", "AddTokens1795730000002", "IndexSessions1795730000003"]);
    const of = (name: string) => authdb.findings.filter((f) => f.migration === name).map((f) => f.rule);
    expect(of("AddSessions1795730000001")).toEqual([]);
    // Outside a transaction what remains is squawk's rerun advice (no IF NOT EXISTS), which holds for new tables too.
    expect(of("AddTokens1795730000002")).toEqual(["prefer-robust-stmts", "prefer-robust-stmts", "prefer-robust-stmts", "prefer-robust-stmts"]);
    expect(of("IndexSessions1795730000003")).toEqual(["require-concurrent-index-creation"]);
  });

  it("transaction = false: CREATE INDEX CONCURRENTLY is clean there, and flagged in a migration that runs in a transaction", async () => {
    const concurrent = [`DROP INDEX CONCURRENTLY IF EXISTS "idx_profiles_first_name"`, `CREATE INDEX CONCURRENTLY IF NOT EXISTS "idx_profiles_first_name" ON "profiles" ("first_name")`];
    add("apidb", "ConcurrentIndex", 1795740000001, concurrent, "transaction = false;");
    add("apidb", "ConcurrentInTransaction", 1795740000002, concurrent.map((s) => s.replace(/first_name/g, "last_name")));
    const [apidb] = (await lintMigrations(config(), { dbs: ["apidb"] })).databases;
    // (squawk has no rule for DROP INDEX CONCURRENTLY in a transaction; PostgreSQL refuses it all the same.)
    expect(apidb.findings.map((f) => [f.migration, f.rule, f.line])).toEqual([["ConcurrentInTransaction1795740000002", "ban-concurrent-index-creation-in-transaction", 2]]);
  });

  it("honours squawk-ignore comments in the SQL, and lists them", async () => {
    add("apidb", "CommentIgnore", 1795750000001, [`-- squawk-ignore ban-drop-column -- column unused since v2\nALTER TABLE "profiles" DROP COLUMN "address"`, RISKY["changing-column-type"]]);
    const [apidb] = (await lintMigrations(config(), { dbs: ["apidb"] })).databases;
    expect(rulesOf(apidb.findings)).toEqual(["changing-column-type"]);
    expect(apidb.findings[0].line).toBe(3);
    expect(apidb.ignoreComments).toEqual([
      expect.objectContaining({ migration: "CommentIgnore1795750000001", scope: "line", rules: ["ban-drop-column"], reason: "column unused since v2", line: 1 }),
    ]);
  });

  it("a migration whose up cannot be recorded is a finding (sql-not-captured), acceptable with a reason", async () => {
    // Reads the database to decide: recorded queries return no rows, so `row.n` throws.
    const readsFirst = (name: string, members = "") => {
      const file = path.join(copy().root, "admindb", `${name.slice(-13)}-${name.slice(0, -13)}.ts`);
      fs.writeFileSync(file, `import { MigrationInterface, QueryRunner } from "typeorm";
export class ${name} implements MigrationInterface {
    ${members}
    public async up(queryRunner: QueryRunner): Promise<void> {
        const [row] = await queryRunner.query("SELECT count(*) AS n FROM documents");
        if (row.n > 0) await queryRunner.query("UPDATE documents SET status = 'uploaded'");
    }
    public async down(): Promise<void> {}
}
`);
      added.push(file);
    };
    readsFirst("ReadsFirst1795760000001");
    const [admindb] = (await lintMigrations(config(), { dbs: ["admindb"] })).databases;
    expect(admindb.findings).toEqual([expect.objectContaining({ rule: "sql-not-captured", migration: "ReadsFirst1795760000001", message: expect.stringMatching(/^its up threw while its SQL was recorded/) })]);

    readsFirst("ReadsAccepted1795760000002", `lint = { ignore: { "sql-not-captured": "reads documents first; reviewed" } };`);
    const again = (await lintMigrations(config(), { dbs: ["admindb"] })).databases[0];
    expect(again.accepted.map((a) => [a.migration, a.rule, a.reason])).toEqual([["ReadsAccepted1795760000002", "sql-not-captured", "reads documents first; reviewed"]]);
  });

  it("the deploy plan's check: one line naming the first unaccepted finding", async () => {
    add("apidb", "Deployable", 1795770000001, [RISKY["require-concurrent-index-creation"], RISKY["ban-drop-column"]]);
    const files = loadMigrationFiles(copy().root, "apidb").filter((f) => f.name === "Deployable1795770000001");
    const result = await lintFiles("apidb", files);
    expect(lintFailure(result)).toMatch(
      /^.*apidb\/1795770000001-Deployable\.ts: require-concurrent-index-creation: During normal index creation, table updates are blocked, but reads are still allowed\. \(and 1 more finding: npm run migration:lint -- --db apidb\); fix it, or accept it in the migration: lint = \{ ignore: \{ "require-concurrent-index-creation": "<why it is safe here>" \} \}$/,
    );
    expect(lintFailure(await lintFiles("apidb", []))).toBeUndefined();
    await expect(checkLint("apidb", files)).rejects.toThrow(expect.objectContaining({ name: "MigrationError", db: "apidb", message: lintFailure(result) }));
    const shipped = loadMigrationFiles(copy().root, "apidb").filter((f) => f.name === "Init1795519558038");
    expect(await checkLint("apidb", shipped)).toEqual(expect.objectContaining({ findings: [], migrations: ["Init1795519558038"] }));
  });
});

describe("migration:lint without a database", () => {
  const dbs = testDatabases("lintnone");
  afterAll(() => dbs.drop());

  it("the shipped migrations lint clean with --all (no database needed)", async () => {
    const report = await lintMigrations(dbs.config, { dbs: [...DATABASES], all: true });
    expect(report).toEqual(expect.objectContaining({ command: "lint", ok: true, scope: "all" }));
    expect(report.databases.map((d) => [d.db, d.exists, d.migrations.length, d.findings.length, d.accepted.length, d.ignoreComments.length])).toEqual([
      ["authdb", null, 2, 0, 0, 0],
      ["apidb", null, 1, 0, 0, 0],
      ["admindb", null, 1, 0, 0, 0],
    ]);
  });

  it("a database that does not exist lints with every migration pending, and is not created", async () => {
    const report = await lintMigrations(dbs.config, { dbs: ["authdb", "admindb"] });
    expect(report.ok).toBe(true);
    expect(report.databases.map((d) => [d.db, d.exists, d.migrations])).toEqual([
      ["authdb", false, ["Init1795519558038", "NormalizeRolesDefault1795519600000"]],
      ["admindb", false, ["Init1795519558038"]],
    ]);
    const { rows } = await withClient("postgres", (c) => c.query(`SELECT datname FROM pg_database WHERE datname = ANY($1)`, [Object.values(dbs.names)]));
    expect(rows).toEqual([]);
  });
});

describe("lint helpers and printer", () => {
  it("finds squawk in node_modules", async () => {
    expect(fs.existsSync(squawkBinary())).toBe(true);
    expect(await squawkVersion()).toMatch(/^\d+\.\d+\.\d+$/);
  });

  it("cuts statements at top-level semicolons only, and knows which table a statement acts on", () => {
    const sql = `INSERT INTO t VALUES ('a;b', E'c\\';d', $$e;f$$); -- g;h\nCREATE INDEX ON "Public"."T" (x); /* i;j */ ALTER TABLE ONLY public.t ADD c int`;
    expect(splitStatements(sql).map((s) => s.text)).toEqual([`INSERT INTO t VALUES ('a;b', E'c\\';d', $$e;f$$)`, `CREATE INDEX ON "Public"."T" (x)`, `ALTER TABLE ONLY public.t ADD c int`]);
    expect(splitStatements(sql).map((s) => targetTable(s.text))).toEqual([undefined, "Public.T", "public.t"]);
    expect(targetTable(`CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS "i" ON ONLY "profiles" USING btree ("a")`)).toBe("public.profiles");
  });

  it("prints one line per finding, accepted ones with their reason, then a summary", () => {
    const file = "src/migrations/apidb/1795600000000-RiskyChange.ts";
    const base = { db: "apidb" as const, migration: "RiskyChange1795600000000", file, line: 1 };
    const report: LintReport = {
      command: "lint", ok: false, scope: "pending", squawkVersion: "2.66.0",
      databases: [
        { db: "authdb", database: "authdb", exists: true, migrations: [], findings: [], accepted: [], ignoreComments: [] },
        {
          db: "apidb", database: "apidb", exists: true, migrations: ["RiskyChange1795600000000"],
          findings: [{ ...base, rule: "require-concurrent-index-creation", message: "During normal index creation, table updates are blocked, but reads are still allowed.", statement: `CREATE INDEX "i" ON "profiles" ("name")` }],
          accepted: [{ ...base, line: 2, rule: "ban-drop-column", message: "Dropping a column may break existing clients.", reason: "unused since v2, reviewed by Aiko" }],
          ignoreComments: [{ db: "apidb", migration: base.migration, file, scope: "file", rules: [], line: 3 }],
        },
      ],
    };
    expect(lintLines(report)).toEqual([
      `apidb: ${file}: require-concurrent-index-creation: During normal index creation, table updates are blocked, but reads are still allowed. [CREATE INDEX "i" ON "profiles" ("name")]`,
      `apidb: ${file}: ban-drop-column: accepted (unused since v2, reviewed by Aiko)`,
      `apidb: ${file}: squawk-ignore-file comment in its SQL (line 3) skips every rule`,
      "lint: 1 finding not accepted in 1 pending migration (authdb 0, apidb 1), 1 accepted; squawk 2.66.0",
    ]);
    expect(lintLines({ ...report, ok: true, databases: [report.databases[0]] })).toEqual(["lint: no pending migrations to lint (--all lints every migration)"]);
    expect(lintLines({ ...report, ok: true, scope: "all", databases: [{ ...report.databases[1], findings: [], accepted: [], ignoreComments: [] }] })).toEqual([
      "lint: no findings in 1 migration (apidb 1); squawk 2.66.0",
    ]);
  });
});
