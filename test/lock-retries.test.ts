// Lock waits that never queue the services: a migration that meets a taken lock rolls back and
// retries within a budget, says who blocked it, and gives up cleanly; a failed concurrent index
// build leaves nothing INVALID behind. Real PostgreSQL, real blocking sessions: each step waits for
// what the other side says (a retry line, a lock in pg_locks), never for a fixed time.
import { spawn } from "child_process";
import * as fs from "fs";
import * as path from "path";
import { Client } from "pg";
import { readApplied } from "../src/runner/history";
import { concurrentIndexOf, durationMs, retryDelay, safeToRepeat } from "../src/runner/lock-retries";
import { CLI, cliEnv, runCli } from "./support/cli";
import { serverUrl } from "./support/databases";
import { migratedWithCopy } from "./support/migrations-dir";

/** Runs the CLI and resolves `seen` when stderr first matches `pattern`. */
function runWatching(args: string[], env: Record<string, string>, pattern: RegExp) {
  const child = spawn(process.execPath, [CLI, ...args], { env: cliEnv(env), stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  let onSeen: () => void = () => undefined;
  const seen = new Promise<void>((resolve) => (onSeen = resolve));
  child.stdout.on("data", (d) => (stdout += d));
  child.stderr.on("data", (d) => {
    stderr += d;
    if (pattern.test(stderr)) onSeen();
  });
  const done = new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => child.on("close", (code) => resolve({ code, stdout, stderr })));
  return { seen, done };
}

/** A session that reads `table` in an open transaction: it holds ACCESS SHARE until `release`. */
async function longReader(database: string, table: string) {
  const c = new Client({ connectionString: serverUrl(database) });
  await c.connect();
  const { rows } = await c.query(`SELECT pg_backend_pid() AS pid`);
  await c.query("BEGIN");
  await c.query(`SELECT count(*) FROM ${table}`);
  return { pid: rows[0].pid as number, release: async () => { await c.query("COMMIT"); await c.end(); } };
}

async function q<T>(database: string, sql: string, params: unknown[] = []): Promise<T[]> {
  const c = new Client({ connectionString: serverUrl(database) });
  await c.connect();
  try {
    return (await c.query(sql, params)).rows as T[];
  } finally {
    await c.end();
  }
}

describe("lock retries: the pure parts", () => {
  it("backoff doubles from 200 ms to 5 s, drawn from the upper half", () => {
    expect([1, 2, 3, 4, 5, 6, 7].map((a) => retryDelay(a, () => 1))).toEqual([200, 400, 800, 1600, 3200, 5000, 5000]);
    expect(retryDelay(3, () => 0)).toBe(400);
    expect(durationMs("100ms") + durationMs("2s") + durationMs("1min")).toBe(62_100);
  });

  it("outside a transaction only statements safe to repeat are retried", () => {
    expect(safeToRepeat(`CREATE INDEX CONCURRENTLY IF NOT EXISTS "i" ON "t" ("c")`)).toBe(true);
    expect(safeToRepeat(`DROP INDEX CONCURRENTLY IF EXISTS "i"`)).toBe(true);
    expect(safeToRepeat(`ALTER TABLE "t" VALIDATE CONSTRAINT "fk"`)).toBe(true);
    expect(safeToRepeat(`ALTER TABLE "t" ADD "c" integer`)).toBe(false);
    expect(safeToRepeat(`UPDATE t SET c = c + 1`)).toBe(false);
    expect(concurrentIndexOf(`CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS "UQ_x" ON t (c)`)).toBe("UQ_x");
    expect(concurrentIndexOf(`CREATE INDEX idx ON t (c)`)).toBeUndefined();
  });
});

describe("a migration's transaction starts in the message of its first statement", () => {
  const { dbs, copy, env } = migratedWithCopy("firststmt");

  it("its first statement, with or without bind parameters, already runs under the migration's settings and gets its own rows", async () => {
    copy().addCode("apidb", "SeenWithParams", 1795800000101,
      `const rows = await queryRunner.query("SELECT current_setting('lock_timeout') AS lt, current_setting('statement_timeout') AS st, $1::text AS tag", ["params"]);
        if (!rows.length) return; // recorded for the lint: no rows
        await queryRunner.query(\`CREATE TABLE seen_first AS SELECT '\${rows[0].lt}'::text AS lt, '\${rows[0].st}'::text AS st, '\${rows[0].tag}'::text AS kind\`);`,
      `await queryRunner.query("DROP TABLE seen_first");`);
    copy().addCode("apidb", "SeenSimple", 1795800000102,
      `const rows = await queryRunner.query("SELECT current_setting('lock_timeout') AS lt, current_setting('statement_timeout') AS st, 'simple' AS tag");
        if (!rows.length) return;
        await queryRunner.query(\`INSERT INTO seen_first VALUES ('\${rows[0].lt}', '\${rows[0].st}', '\${rows[0].tag}')\`);`,
      `await queryRunner.query("DELETE FROM seen_first WHERE kind = 'simple'");`);
    const r = await runCli(["migration:run", "--db", "apidb"], { ...env(), MIGRATION_LOCK_TIMEOUT: "250ms", MIGRATION_STATEMENT_TIMEOUT: "7min" });
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(await q(dbs.names.apidb, `SELECT lt, st, kind FROM seen_first ORDER BY kind`)).toEqual([
      { lt: "250ms", st: "7min", kind: "params" },
      { lt: "250ms", st: "7min", kind: "simple" },
    ]);
  });

  it("its first statement is inside the transaction: a migration that fails after it leaves nothing", async () => {
    copy().addCode("apidb", "FailsAfterFirst", 1795800000103, `await queryRunner.query("CREATE TABLE never_kept (id int)");
        if ((await queryRunner.query("SELECT 1 AS one")).length) throw new Error("stop here");`, ``);
    const r = await runCli(["migration:run", "--db", "apidb"], env());
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/stop here/);
    expect(await q(dbs.names.apidb, `SELECT to_regclass('never_kept') IS NULL AS gone`)).toEqual([{ gone: true }]);
  });

  it("a syntax error in its first statement, caught by the migration, still leaves the rest inside the transaction", async () => {
    fs.rmSync(path.join(copy().root, "apidb", "1795800000103-FailsAfterFirst.ts"), { force: true }); // the test above's, never applied
    copy().addCode("apidb", "CatchesFirst", 1795800000104, `try {
            await queryRunner.query("CREATE TABLEX tried_first (id int)");
        } catch {
            // an older server's syntax: go on without it
        }
        await queryRunner.query("CREATE TABLE after_caught (id int)");
        if ((await queryRunner.query("SELECT 1 AS one")).length) throw new Error("stop after the caught error");`, ``);
    const r = await runCli(["migration:run", "--db", "apidb", "--unsafe"], env());
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/stop after the caught error/);
    expect(await q(dbs.names.apidb, `SELECT to_regclass('after_caught') IS NULL AS gone`)).toEqual([{ gone: true }]);
  });
});

describe("a migration behind a long reader", () => {
  const { dbs, copy, env } = migratedWithCopy("lockretry");
  const maintenance = async () => (await q<{ v: string }>(dbs.names.admindb, `SELECT value::text AS v FROM system_settings WHERE key = 'maintenance_mode'`))[0].v;

  it("retries with a short lock_timeout and succeeds once the reader is gone, naming who blocked it", async () => {
    copy().add("apidb", "AddNickname", 1795800000001, `ALTER TABLE profiles ADD COLUMN nickname text`, `ALTER TABLE profiles DROP COLUMN nickname`);
    const reader = await longReader(dbs.names.apidb, "profiles");
    const run = runWatching(["migration:run", "--db", "apidb"], { ...env(), MIGRATION_LOCK_RETRY_BUDGET: "2min" }, /lock not available/);
    await run.seen; // the migration met the lock, rolled back, and will try again
    await reader.release();
    const r = await run.done;
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(new RegExp(`apidb: AddNickname1795800000001: lock not available \\(held by pid ${reader.pid} \\(query started [^)]+\\): SELECT count\\(\\*\\) FROM profiles\\); rolled back, try 2 in \\d+\\.\\d s`));
    const columns = await q(dbs.names.apidb, `SELECT 1 FROM information_schema.columns WHERE table_name = 'profiles' AND column_name = 'nickname'`);
    expect(columns).toHaveLength(1);
  });

  it("gives up at the budget: rolled back, maintenance restored, the error names the blocking pid and its query start", async () => {
    copy().add("apidb", "AddBio", 1795800000002, `ALTER TABLE profiles ADD COLUMN bio text`, `ALTER TABLE profiles DROP COLUMN bio`);
    const before = await maintenance();
    const reader = await longReader(dbs.names.apidb, "profiles");
    try {
      const r = await runCli(["migration:run", "--db", "apidb"], { ...env(), MIGRATION_LOCK_RETRY_BUDGET: "1s" });
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(new RegExp(`error: apidb: migration AddBio1795800000002 failed: lock not available: gave up after \\d+ tries of lock_timeout 100ms within 1s \\(MIGRATION_LOCK_RETRY_BUDGET\\); blocked by pid ${reader.pid} \\(query started \\d{4}-[^)]+\\): SELECT count`));
      const applied = await q<{ name: string }>(dbs.names.apidb, `SELECT name FROM migrations WHERE name = 'AddBio1795800000002'`);
      expect(applied).toEqual([]);
      const columns = await q(dbs.names.apidb, `SELECT 1 FROM information_schema.columns WHERE table_name = 'profiles' AND column_name = 'bio'`);
      expect(columns).toEqual([]);
      expect(await maintenance()).toBe(before);
    } finally {
      await reader.release();
    }
    // Once the reader is gone, the same deploy goes through.
    const again = await runCli(["migration:run", "--db", "apidb"], env());
    expect(again.code).toBe(0);
  });
});

describe("a failed concurrent index build", () => {
  const { dbs, copy, env } = migratedWithCopy("invalididx");
  const invalid = async () => q<{ name: string }>(dbs.names.apidb, `SELECT c.relname AS name FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE NOT i.indisvalid`);
  const concurrent = (name: string, ts: number, up: string, down: string) => {
    copy().addCode("apidb", name, ts, `await queryRunner.query(${JSON.stringify(up)});`, `await queryRunner.query(${JSON.stringify(down)});`);
    const file = `${copy().root}/apidb/${ts}-${name}.ts`;
    const fs = require("fs") as typeof import("fs");
    fs.writeFileSync(file, fs.readFileSync(file, "utf8").replace("implements MigrationInterface {", "implements MigrationInterface {\n    transaction = false;"));
  };

  it("leaves no INVALID index; a later run rebuilds one an earlier run left", async () => {
    await q(dbs.names.apidb, `INSERT INTO profiles (user_id, name) SELECT gen_random_uuid(), 'same' FROM generate_series(1, 3)`);
    concurrent("UniqueName", 1795800000010,
      `CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS "UQ_profiles_name" ON "profiles" ("name")`,
      `DROP INDEX CONCURRENTLY IF EXISTS "UQ_profiles_name"`);
    const r = await runCli(["migration:run", "--db", "apidb"], env());
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/error: apidb: migration UniqueName1795800000010 failed: could not create unique index "UQ_profiles_name"/);
    expect(await invalid()).toEqual([]);

    // What a run killed in the middle of the build would leave: an INVALID index under the name.
    await q(dbs.names.apidb, `CREATE UNIQUE INDEX CONCURRENTLY "UQ_profiles_name" ON profiles (name)`).catch(() => undefined);
    expect(await invalid()).toEqual([{ name: "UQ_profiles_name" }]);
    await q(dbs.names.apidb, `DELETE FROM profiles WHERE name = 'same'`);
    const fixed = await runCli(["migration:run", "--db", "apidb"], env());
    expect(fixed.stderr).toBe("");
    expect(fixed.code).toBe(0);
    expect(await invalid()).toEqual([]);
    const valid = await q<{ v: boolean }>(dbs.names.apidb, `SELECT indisvalid AS v FROM pg_index WHERE indexrelid = '"UQ_profiles_name"'::regclass`);
    expect(valid).toEqual([{ v: true }]);
    const c = new Client({ connectionString: serverUrl(dbs.names.apidb) });
    await c.connect();
    expect((await readApplied(c)).map((a) => a.name)).toContain("UniqueName1795800000010");
    await c.end();
  });
});

describe("a concurrent index build behind an open write transaction", () => {
  const { dbs, copy, env } = migratedWithCopy("cicwait");

  it("waits for it as long as it takes (its lock blocks no writes) and ends with a valid index", async () => {
    const file = `${copy().root}/apidb/1795800000020-IndexLastName.ts`;
    copy().addCode("apidb", "IndexLastName", 1795800000020,
      `await queryRunner.query('CREATE INDEX CONCURRENTLY IF NOT EXISTS "idx_profiles_last_name" ON "profiles" ("last_name")');`,
      `await queryRunner.query('DROP INDEX CONCURRENTLY IF EXISTS "idx_profiles_last_name"');`);
    const fs = require("fs") as typeof import("fs");
    fs.writeFileSync(file, fs.readFileSync(file, "utf8").replace("implements MigrationInterface {", "implements MigrationInterface {\n    transaction = false;"));
    const writer = new Client({ connectionString: serverUrl(dbs.names.apidb) });
    await writer.connect();
    await writer.query("BEGIN");
    await writer.query(`INSERT INTO profiles (user_id, name) VALUES (gen_random_uuid(), 'open')`);
    const run = runWatching(["migration:run", "--db", "apidb"], env(), /never/);
    // The build waits for the writer's transaction (a virtualxid lock): seen in pg_stat_activity.
    for (;;) {
      const waiting = await q<{ n: number }>(dbs.names.apidb, `SELECT count(*)::int AS n FROM pg_stat_activity WHERE query LIKE 'CREATE INDEX CONCURRENTLY%' AND wait_event_type = 'Lock'`);
      if (waiting[0].n > 0) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    await writer.query("COMMIT");
    await writer.end();
    const r = await run.done;
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const valid = await q<{ v: boolean }>(dbs.names.apidb, `SELECT indisvalid AS v FROM pg_index WHERE indexrelid = '"idx_profiles_last_name"'::regclass`);
    expect(valid).toEqual([{ v: true }]);
  });
});
