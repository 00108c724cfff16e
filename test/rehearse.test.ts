// migration:rehearse on real PostgreSQL: pending migrations up, down and up again on a scratch copy,
// with locks, rewrites and rows observed; a migration that fails only on the real data; a copy from
// a db:backup archive (and one whose checksum does not match); a given --scratch-url database left
// empty; Ctrl-C; leftovers of a killed rehearsal. The real databases and the server's database list
// stay exactly as they were.
import { spawnSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { Client } from "pg";
import { rehearseMigrations, RehearseReport } from "../src/commands/rehearse";
import { loadConfig } from "../src/config";
import { DATABASES, DbName } from "../src/databases";
import { inferredLock, statementTarget } from "../src/rehearsal/locks";
import { scratchName, scratchRunId } from "../src/rehearsal/scratch";
import { applicationName } from "../src/postgres/data-source";
import { DEFAULT_TIMEOUTS } from "../src/runner/migrator";
import { rehearse as printRehearse } from "../scripts/print-rehearse";
import { runCli } from "./support/cli";
import { serverUrl, testDatabases, TestDatabases, withClient } from "./support/databases";
import { migratedWithCopy, MigrationsCopy } from "./support/migrations-dir";

/** A migration file; `members` are class members such as `transaction = false;`. */
function addMigration(copy: MigrationsCopy, db: DbName, name: string, timestamp: number, up: string[], down: string[], members = ""): void {
  const body = (sql: string[]) => sql.map((s) => `        await queryRunner.query(${JSON.stringify(s)});`).join("\n");
  fs.writeFileSync(path.join(copy.root, db, `${timestamp}-${name}.ts`), `import { MigrationInterface, QueryRunner } from "typeorm";

export class ${name}${timestamp} implements MigrationInterface {
    name = "${name}${timestamp}";
    ${members}

    public async up(queryRunner: QueryRunner): Promise<void> {
${body(up)}
    }

    public async down(queryRunner: QueryRunner): Promise<void> {
${body(down)}
    }
}
`);
}

/**
 * What must not change: the server's databases (ours and any scratch of this file's: other test files
 * rehearse on the same server at the same time), and each database's applied migrations.
 */
async function serverState(dbs: TestDatabases): Promise<{ databases: string[]; applied: Record<string, string[]> }> {
  const databases = await withClient("postgres", async (c) => (await c.query(
    `SELECT datname FROM pg_database WHERE datname LIKE ANY($1) OR (datname LIKE '%\\_rehearsal\\_%' AND datname LIKE '%\\_rehearse\\_%') ORDER BY 1`,
    [DATABASES.map((db) => `${dbs.names[db]}%`)],
  )).rows.map((r) => r.datname as string));
  const applied: Record<string, string[]> = {};
  for (const db of DATABASES) {
    applied[db] = await withClient(dbs.names[db], async (c) => (await c.query(`SELECT name FROM migrations ORDER BY id`)).rows.map((r) => r.name as string));
  }
  return { databases, applied };
}

/** Scratch databases of this file's rehearsals (its databases are all named `<db>_rehearse..._<hex>`). */
async function scratchDatabases(): Promise<string[]> {
  return withClient("postgres", async (c) => (await c.query(`SELECT datname FROM pg_database WHERE datname LIKE '%\\_rehearsal\\_%' AND datname LIKE '%\\_rehearse\\_%'`)).rows.map((r) => r.datname as string));
}


const migration = (report: RehearseReport, name: string, phase: "up" | "down" | "up-again") => {
  const found = report.databases.flatMap((d) => d.migrations).find((m) => m.name.startsWith(name) && m.phase === phase);
  if (!found) throw new Error(`no ${phase} of ${name} in the report`);
  return found;
};

describe("statement kinds (outside a transaction)", () => {
  it("reads the lock and the table from the statement", () => {
    expect(inferredLock(`CREATE INDEX CONCURRENTLY "i" ON "profiles" ("x")`)).toBe("ShareUpdateExclusiveLock");
    expect(inferredLock(`ALTER TABLE "documents" VALIDATE CONSTRAINT "fk"`)).toBe("ShareUpdateExclusiveLock");
    expect(inferredLock(`ALTER TABLE "documents" ADD CONSTRAINT "fk" FOREIGN KEY ("kb") REFERENCES "kb"("id") NOT VALID`)).toBe("ShareRowExclusiveLock");
    expect(inferredLock(`ALTER TABLE profiles ADD COLUMN x text`)).toBe("AccessExclusiveLock");
    // The strongest of its subcommands; commas inside parentheses do not cut.
    expect(inferredLock(`ALTER TABLE "documents" VALIDATE CONSTRAINT "fk", ADD COLUMN "y" text`)).toBe("AccessExclusiveLock");
    expect(inferredLock(`ALTER TABLE "documents" ADD CONSTRAINT "fk2" FOREIGN KEY ("a", "b") REFERENCES "t"("x", "y") NOT VALID`)).toBe("ShareRowExclusiveLock");
    expect(inferredLock(`ALTER TABLE "documents" ALTER COLUMN "tags" SET STATISTICS 500, SET (fillfactor = 90)`)).toBe("ShareUpdateExclusiveLock");
    expect(inferredLock(`DROP INDEX CONCURRENTLY IF EXISTS "i"`)).toBe("ShareUpdateExclusiveLock");
    expect(inferredLock(`UPDATE "profiles" SET name = 'x'`)).toBe("RowExclusiveLock");
    expect(inferredLock(`LOCK TABLE profiles IN SHARE ROW EXCLUSIVE MODE`)).toBe("ShareRowExclusiveLock");
    expect(inferredLock(`VACUUM (FULL) profiles`)).toBe("AccessExclusiveLock");
    expect(inferredLock(`CREATE TABLE t (id int)`)).toBeUndefined();
    expect(statementTarget(`UPDATE "Profiles" SET name = 'x'`)).toEqual({ table: "public.Profiles" });
    expect(statementTarget(`DROP INDEX CONCURRENTLY IF EXISTS "public"."idx_x"`)).toEqual({ index: "public.idx_x" });
    expect(statementTarget(`CREATE INDEX CONCURRENTLY "i" ON "profiles" ("x")`)).toEqual({ table: "public.profiles" });
  });

  it("names scratch databases so that a later run finds its leftovers", () => {
    const name = scratchName("apidb", "20261124T120301Z-3fa9");
    expect(name).toBe("apidb_rehearsal_20261124t120301z_3fa9");
    expect(scratchRunId("apidb", name)).toBe("20261124T120301Z-3fa9");
    expect(scratchRunId("apidb", "apidb_shadow_12ab34")).toBeUndefined();
    expect(scratchName("x".repeat(80), "20261124T120301Z-3fa9").length).toBeLessThanOrEqual(63);
  });
});

describe("a rehearsal of good migrations", () => {
  const { dbs, copy, env } = migratedWithCopy("rehearse");
  beforeAll(async () => {
    await withClient(dbs.names.apidb, (c) => c.query(`INSERT INTO profiles (user_id, name) SELECT uuid_generate_v4(), 'name ' || g FROM generate_series(1, 50) g`));
    addMigration(copy(), "apidb", "AddNickname", 1795600000001, [`ALTER TABLE "profiles" ADD COLUMN "nickname" text`], [`ALTER TABLE "profiles" DROP COLUMN "nickname"`]);
    addMigration(copy(), "apidb", "IndexNickname", 1795600000002, [`CREATE INDEX CONCURRENTLY "idx_profiles_nickname" ON "profiles" ("nickname")`], [`DROP INDEX CONCURRENTLY "idx_profiles_nickname"`], "transaction = false;");
    addMigration(copy(), "apidb", "RetypeUserId", 1795600000003, [`ALTER TABLE "profiles" ALTER COLUMN "user_id" TYPE text`], [`ALTER TABLE "profiles" ALTER COLUMN "user_id" TYPE uuid USING "user_id"::uuid`]);
    addMigration(copy(), "apidb", "DropTestProfiles", 1795600000004, [`DELETE FROM "profiles" WHERE "name" LIKE 'name 1%'`], []);
  });

  it("reports time, locks, rewrites and rows, and leaves the databases and the server's database list as they were", async () => {
    const before = await serverState(dbs);
    const events: string[] = [];
    const report = await rehearseMigrations(loadConfig(env()), {
      dbs: [...DATABASES], timeouts: DEFAULT_TIMEOUTS, progress: (e) => events.push(`${e.db} ${e.step} ${e.detail ?? ""} ${e.phase}`),
    });
    expect(report.failure).toBeUndefined();
    expect(report.ok).toBe(true);
    expect(report.skipped).toEqual([{ db: "authdb", reason: "nothing pending" }, { db: "admindb", reason: "nothing pending" }]);
    const [apidb] = report.databases;
    expect(apidb).toMatchObject({ db: "apidb", database: dbs.names.apidb, source: "pg_dump", sameSchemaAfterDownUp: true, differences: [], downRestoresSchema: true });
    expect(apidb.sizeBytes).toBeGreaterThan(1_000_000);
    expect(apidb.copyMs).toBeGreaterThan(0);
    expect(apidb.migrations.map((m) => `${m.phase} ${m.name}`)).toEqual([
      "up AddNickname1795600000001", "up IndexNickname1795600000002", "up RetypeUserId1795600000003", "up DropTestProfiles1795600000004",
      "down DropTestProfiles1795600000004", "down RetypeUserId1795600000003", "down IndexNickname1795600000002", "down AddNickname1795600000001",
      "up-again AddNickname1795600000001", "up-again IndexNickname1795600000002", "up-again RetypeUserId1795600000003", "up-again DropTestProfiles1795600000004",
    ]);
    // The progress line of the copy carries the size and an estimate.
    expect(events).toContainEqual(expect.stringMatching(/^apidb copy \d+ MiB \(about \d+ s\) start$/));

    const add = migration(report, "AddNickname", "up");
    expect(add.transaction).toBe(true);
    expect(add.durationMs).toBeGreaterThan(0);
    expect(add.statements).toEqual([expect.objectContaining({ sql: `ALTER TABLE "profiles" ADD COLUMN "nickname" text`, lock: { mode: "AccessExclusiveLock", table: "profiles" } })]);
    expect(add.rewritten).toEqual([]); // a nullable column without a default: no rewrite
    expect(add.rows).toEqual({ profiles: { before: 50, after: 50 } });

    const index = migration(report, "IndexNickname", "up");
    expect(index.transaction).toBe(false);
    expect(index.statements[0].lock).toEqual({ mode: "ShareUpdateExclusiveLock", table: "profiles", inferred: true });
    expect(index.rewritten).toEqual([]);
    expect(migration(report, "IndexNickname", "down").statements[0].lock).toEqual({ mode: "ShareUpdateExclusiveLock", table: "profiles", inferred: true });

    const retype = migration(report, "RetypeUserId", "up");
    expect(retype.statements[0].lock).toEqual({ mode: "AccessExclusiveLock", table: "profiles" });
    expect(retype.rewritten).toEqual(["profiles"]);
    expect(retype.rows).toEqual({ profiles: { before: 50, after: 50 } });
    expect(migration(report, "RetypeUserId", "down").rewritten).toEqual(["profiles"]);

    // A data migration: its rows change, under a row lock only.
    const deleted = migration(report, "DropTestProfiles", "up");
    expect(deleted.statements[0].lock).toEqual({ mode: "RowExclusiveLock", table: "profiles" });
    expect(deleted.rows).toEqual({ profiles: { before: 50, after: 39 } }); // name 1, name 10..19
    expect(migration(report, "DropTestProfiles", "up-again").rows).toEqual({ profiles: { before: 39, after: 39 } });

    // Nothing real changed: no migration applied, no column, no scratch database left.
    expect(await serverState(dbs)).toEqual(before);
    const columns = await withClient(dbs.names.apidb, async (c) => (await c.query(`SELECT column_name FROM information_schema.columns WHERE table_name = 'profiles' AND column_name = 'nickname'`)).rowCount);
    expect(columns).toBe(0);
    expect((await scratchDatabases()).filter((n) => n.startsWith(dbs.names.apidb))).toEqual([]);

    // The human output names the locks and the rewrite.
    const lines: string[] = [];
    const log = jest.spyOn(console, "log").mockImplementation((...a: unknown[]) => void lines.push(a.join(" ")));
    const err = jest.spyOn(console, "error").mockImplementation((...a: unknown[]) => void lines.push(a.join(" ")));
    try {
      printRehearse(report);
    } finally {
      log.mockRestore();
      err.mockRestore();
    }
    const text = lines.join("\n");
    expect(text).toMatch(/AccessExclusiveLock on profiles: blocks reads and writes/);
    expect(text).toMatch(/ShareUpdateExclusiveLock on profiles \(by statement kind\)/);
    expect(text).toMatch(/REWRITES profiles/);
    expect(text).toMatch(/up again ends at the same schema/);
    expect(text).toMatch(/: ok \(/);
  });

  it("removes the scratch database and temp directory a killed rehearsal left, and keeps those of a run still connected or still running", async () => {
    const dead = scratchName(dbs.names.apidb, "20200101T000000Z-dead");
    const live = scratchName(dbs.names.apidb, "20200101T000000Z-0a1e");
    await withClient("postgres", async (c) => {
      await c.query(`CREATE DATABASE "${dead}"`);
      await c.query(`CREATE DATABASE "${live}"`);
    });
    const exited = spawnSync("true").pid; // a process that is gone
    const deadDir = fs.mkdtempSync(path.join(os.tmpdir(), `aimig-rehearsal-20200101T000000Z-dead-${exited}-`));
    fs.writeFileSync(path.join(deadDir, "toc.dat"), "left by a killed run");
    // A rehearsal still running (this process) of another server: its run has no connection here.
    const otherServerDir = fs.mkdtempSync(path.join(os.tmpdir(), `aimig-rehearsal-20200101T000000Z-beef-${process.pid}-`));
    const holder = new Client({ connectionString: serverUrl("postgres"), application_name: applicationName("20200101T000000Z-0a1e") });
    await holder.connect();
    try {
      const report = await rehearseMigrations(loadConfig(env()), { dbs: ["apidb"], timeouts: DEFAULT_TIMEOUTS });
      expect(report.ok).toBe(true);
      expect(report.removedLeftovers).toContain(dead);
      expect(report.removedLeftovers).not.toContain(live);
      const left = await scratchDatabases();
      expect(left).not.toContain(dead);
      expect(left).toContain(live);
      expect(report.removedLeftovers).toContain(deadDir);
      expect(fs.existsSync(deadDir)).toBe(false);
      expect(fs.existsSync(otherServerDir)).toBe(true);
    } finally {
      fs.rmSync(otherServerDir, { recursive: true, force: true });
      await holder.end();
      await withClient("postgres", (c) => c.query(`DROP DATABASE IF EXISTS "${live}" WITH (FORCE)`));
    }
  });
});

describe("a migration that fails only on the real data", () => {
  const { dbs, copy, env } = migratedWithCopy("rehearse_fail");
  beforeAll(async () => {
    await withClient(dbs.names.apidb, (c) => c.query(`INSERT INTO profiles (user_id, name) SELECT uuid_generate_v4(), 'same name' FROM generate_series(1, 3)`));
    addMigration(copy(), "apidb", "UniqueName", 1795600000001, [`ALTER TABLE "profiles" ADD CONSTRAINT "profiles_name_key" UNIQUE ("name")`], [`ALTER TABLE "profiles" DROP CONSTRAINT "profiles_name_key"`]);
  });

  it("fails the rehearsal naming the migration and the server's error; the scratch database is gone", async () => {
    const before = await serverState(dbs);
    const report = await rehearseMigrations(loadConfig(env()), { dbs: ["apidb"], timeouts: DEFAULT_TIMEOUTS });
    expect(report.ok).toBe(false);
    expect(report.failure).toMatchObject({ db: "apidb", migration: "UniqueName1795600000001", phase: "up", message: expect.stringMatching(/could not create unique index "profiles_name_key"/) });
    expect(report.failure!.statement).toMatch(/ADD CONSTRAINT "profiles_name_key" UNIQUE/);
    expect(migration(report, "UniqueName", "up").error).toMatch(/could not create unique index/);
    expect(report.databases[0].sameSchemaAfterDownUp).toBeNull();
    expect(await serverState(dbs)).toEqual(before);
    expect((await scratchDatabases()).filter((n) => n.startsWith(dbs.names.apidb))).toEqual([]);
  });
});

describe("a down that does not undo its up", () => {
  const { copy, env } = migratedWithCopy("rehearse_down");
  beforeAll(() => {
    addMigration(copy(), "apidb", "AddLegacy", 1795600000001, [`ALTER TABLE "profiles" ADD COLUMN IF NOT EXISTS "legacy" text`], [`SELECT 1`]);
  });

  it("is not ok: the downs leave the column, listed as a difference", async () => {
    const report = await rehearseMigrations(loadConfig(env()), { dbs: ["apidb"], timeouts: DEFAULT_TIMEOUTS });
    expect(report.failure).toBeUndefined();
    expect(report.ok).toBe(false);
    expect(report.databases[0]).toMatchObject({ downRestoresSchema: false, downDifferences: ["column profiles.legacy unexpected"], sameSchemaAfterDownUp: true });
  });
});

describe("a rehearsal from a backup, and in a given scratch database", () => {
  const { dbs, copy, env } = migratedWithCopy("rehearse_backup");
  let backupRun = "";
  beforeAll(async () => {
    await withClient(dbs.names.apidb, (c) => c.query(`INSERT INTO profiles (user_id, name) SELECT uuid_generate_v4(), 'name ' || g FROM generate_series(1, 20) g`));
    const r = await runCli(["db:backup", "--json"], env());
    if (r.code !== 0) throw new Error(`db:backup failed: ${r.stderr}`);
    backupRun = JSON.parse(r.stdout).runId;
    addMigration(copy(), "apidb", "AddNickname", 1795600000001, [`ALTER TABLE "profiles" ADD COLUMN "nickname" text`], [`ALTER TABLE "profiles" DROP COLUMN "nickname"`]);
  });

  it("--from-backup copies the verified <db>.dump and rehearses what is pending after it", async () => {
    const before = await serverState(dbs);
    const report = await rehearseMigrations(loadConfig(env()), { dbs: [...DATABASES], fromBackup: backupRun, timeouts: DEFAULT_TIMEOUTS });
    expect(report.failure).toBeUndefined();
    expect(report.databases.map((d) => [d.db, d.source])).toEqual([["apidb", `backup ${backupRun}`]]);
    expect(report.skipped.map((s) => s.db)).toEqual(["authdb", "admindb"]);
    expect(migration(report, "AddNickname", "up").rows).toEqual({ profiles: { before: 20, after: 20 } });
    expect(report.databases[0].sameSchemaAfterDownUp).toBe(true);
    expect(await serverState(dbs)).toEqual(before);
  });

  it("refuses a backup whose archive does not match its manifest checksum", async () => {
    const dir = path.join(dbs.env.MIGRATION_BACKUP_DIR, backupRun);
    const tampered = path.join(dbs.env.MIGRATION_BACKUP_DIR, `${backupRun}-tampered`);
    fs.cpSync(dir, tampered, { recursive: true });
    fs.appendFileSync(path.join(tampered, "apidb.dump"), "x");
    const report = await rehearseMigrations(loadConfig(env()), { dbs: ["apidb"], fromBackup: `${backupRun}-tampered`, timeouts: DEFAULT_TIMEOUTS });
    expect(report.ok).toBe(false);
    expect(report.failure?.message).toMatch(/apidb\.dump .* does not match its manifest checksum/);
    expect((await scratchDatabases()).filter((n) => n.startsWith(dbs.names.apidb))).toEqual([]);
  });

  it("--scratch-url: rehearses in the given empty database and leaves it empty", async () => {
    const scratch = `${dbs.names.apidb}_given`;
    await withClient("postgres", (c) => c.query(`CREATE DATABASE "${scratch}"`));
    const contents = () => withClient(scratch, async (c) => ({
      relations: (await c.query(`SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'`)).rows.map((r) => r.relname),
      extensions: (await c.query(`SELECT extname FROM pg_extension ORDER BY 1`)).rows.map((r) => r.extname),
      schemas: (await c.query(`SELECT nspname FROM pg_namespace ORDER BY 1`)).rows.map((r) => r.nspname),
    }));
    const empty = await contents();
    const report = await rehearseMigrations(loadConfig(env()), { dbs: ["apidb"], scratchUrl: serverUrl(scratch), timeouts: DEFAULT_TIMEOUTS });
    expect(report.failure).toBeUndefined();
    expect(report.databases[0]).toMatchObject({ scratch, scratchGiven: true, source: "pg_dump", sameSchemaAfterDownUp: true });
    expect(migration(report, "AddNickname", "up").statements[0].lock).toEqual({ mode: "AccessExclusiveLock", table: "profiles" });
    expect(await contents()).toEqual(empty);

    // A killed run's copy, marked as ours: the next run empties it first and goes on.
    await withClient(scratch, async (c) => {
      await c.query(`CREATE TABLE public.migrations_rehearsal (run_id text NOT NULL, schemas text[] NOT NULL, extensions text[] NOT NULL)`);
      await c.query(`INSERT INTO public.migrations_rehearsal VALUES ('20200101T000000Z-dead', $1, $2)`, [empty.schemas, empty.extensions]);
      await c.query(`CREATE EXTENSION "uuid-ossp"; CREATE SCHEMA extra; CREATE TABLE profiles (id int); CREATE TABLE extra.t (id int)`);
    });
    const again = await rehearseMigrations(loadConfig(env()), { dbs: ["apidb"], scratchUrl: serverUrl(scratch), timeouts: DEFAULT_TIMEOUTS });
    expect(again.failure).toBeUndefined();
    expect(await contents()).toEqual(empty);

    // A real database is never taken for a scratch one.
    await expect(rehearseMigrations(loadConfig(env()), { dbs: ["apidb"], scratchUrl: serverUrl(dbs.names.authdb), timeouts: DEFAULT_TIMEOUTS })).rejects.toThrow(/--scratch-url is authdb's own database/);

    // Anything else in it is refused, and left alone.
    await withClient(scratch, (c) => c.query(`CREATE TABLE someone_elses (id int)`));
    await expect(rehearseMigrations(loadConfig(env()), { dbs: ["apidb"], scratchUrl: serverUrl(scratch), timeouts: DEFAULT_TIMEOUTS })).rejects.toThrow(/is not empty/);
    expect((await contents()).relations).toEqual(["someone_elses"]);
  });
});

describe("databases that do not exist yet", () => {
  const dbs = testDatabases("rehearse_new");
  afterAll(() => dbs.drop());

  it("rehearses every migration on empty scratch databases and creates no real database", async () => {
    const before = await scratchDatabases();
    const report = await rehearseMigrations(loadConfig(dbs.env), { dbs: [...DATABASES], timeouts: DEFAULT_TIMEOUTS });
    expect(report.failure).toBeUndefined();
    expect(report.databases.map((d) => [d.db, d.source, d.sameSchemaAfterDownUp, d.downRestoresSchema])).toEqual(DATABASES.map((db) => [db, "empty", true, true]));
    // The Init migrations create their tables: locks are only reported on tables that existed before.
    const init = migration(report, "Init", "up");
    expect(init.statements.filter((s) => s.lock)).toEqual([]);
    // Dropping a foreign key locks both of its tables; the statement's own table is named first.
    const down = report.databases.find((d) => d.db === "admindb")!.migrations.find((m) => m.phase === "down")!;
    expect(down.statements[0]).toMatchObject({
      sql: `ALTER TABLE "langchain_pg_embedding" DROP CONSTRAINT "langchain_pg_embedding_document_id_fkey"`,
      lock: { mode: "AccessExclusiveLock", table: "langchain_pg_embedding", alsoOn: ["documents"] },
    });
    const exists = await withClient("postgres", async (c) => (await c.query(`SELECT datname FROM pg_database WHERE datname = ANY($1)`, [Object.values(dbs.names)])).rowCount);
    expect(exists).toBe(0);
    expect(await scratchDatabases()).toEqual(before);
  });
});

describe("an interrupted rehearsal (Ctrl-C, or a deploy ending its pg_dump)", () => {
  const { dbs, copy, env } = migratedWithCopy("rehearse_abort");
  beforeAll(() => {
    addMigration(copy(), "apidb", "Slow", 1795600000001, [`SELECT pg_sleep(60)`], []);
  });

  it("cancels the running statement, reports it, and drops the scratch database", async () => {
    const before = await serverState(dbs);
    const controller = new AbortController();
    const started = Date.now();
    const report = await rehearseMigrations(loadConfig(env()), {
      dbs: ["apidb"], timeouts: DEFAULT_TIMEOUTS, signal: controller.signal,
      progress: (e) => {
        if (e.step === "up" && e.phase === "start") setTimeout(() => controller.abort(), 300);
      },
    });
    expect(Date.now() - started).toBeLessThan(30_000);
    expect(report.ok).toBe(false);
    expect(report.failure).toMatchObject({ db: "apidb", migration: "Slow1795600000001", message: expect.stringMatching(/interrupted/) });
    expect((await scratchDatabases()).filter((n) => n.startsWith(dbs.names.apidb))).toEqual([]);
    expect(await serverState(dbs)).toEqual(before);
  });

  it("gives way to a deploy: a pg_dump the server ends fails the rehearsal with a clear message, and cleans up", async () => {
    // pg_dump waits for a table a deploy holds; the deploy then ends other runs' connections (as endLeftovers does).
    const deploy = new Client({ connectionString: serverUrl(dbs.names.apidb) });
    await deploy.connect();
    await deploy.query(`BEGIN; LOCK TABLE profiles IN ACCESS EXCLUSIVE MODE`);
    try {
      // From a connection of its own: pg_stat_activity inside a transaction is a snapshot.
      const ended = withClient(dbs.names.apidb, async (c) => {
        for (let i = 0; i < 400; i++) {
          const { rowCount } = await c.query(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND application_name LIKE 'ai-micro-migrations run % pg_dump'`);
          if (rowCount) return;
          await new Promise((r) => setTimeout(r, 50));
        }
      });
      const report = await rehearseMigrations(loadConfig(env()), { dbs: ["apidb"], timeouts: DEFAULT_TIMEOUTS });
      await ended;
      expect(report.ok).toBe(false);
      expect(report.failure?.message).toMatch(/pg_dump failed: its connection was ended by the server \(a migration:run that starts/);
      expect((await scratchDatabases()).filter((n) => n.startsWith(dbs.names.apidb))).toEqual([]);
    } finally {
      await deploy.query("ROLLBACK").catch(() => undefined);
      await deploy.end();
    }
  });
});
