// Expand/contract and batched backfills on real PostgreSQL, with "services" writing while the
// phases are deployed: an old one writing the old column, a new one writing the new column. The
// migrations are written by the renderer (what generate will write); the deploys run the real CLI.
import { spawn } from "child_process";
import * as fs from "fs";
import * as path from "path";
import { Client } from "pg";
import { DataSource } from "typeorm";
import { renderEvolveMigrations } from "../src/evolve";
import type { EvolveChange } from "../src/evolve";
import { backfill } from "../src/evolve/backfill";
import type { BackfillEvent } from "../src/runner/migration-runtime";
import { attachRuntime } from "../src/runner/migration-runtime";
import { DEFAULT_TIMEOUTS } from "../src/runner/migrator";
import { CLI, cliEnv, runCli } from "./support/cli";
import { serverUrl, withClient } from "./support/databases";
import { migratedWithCopy, MigrationsCopy } from "./support/migrations-dir";
import { startPrimaryWithStandby } from "./support/standby";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function addRendered(copy: MigrationsCopy, name: string, timestamp: number, changes: EvolveChange[]): void {
  for (const f of renderEvolveMigrations(name, timestamp, changes)) fs.writeFileSync(path.join(copy.root, "apidb", `${f.timestamp}-${name}.ts`), f.text);
}

async function q<T = Record<string, unknown>>(database: string, sql: string, params: unknown[] = []): Promise<T[]> {
  return withClient(database, async (c) => (await c.query(sql, params)).rows as T[]);
}

/** md5 of (id, column) over every row, and the row count. */
async function digest(database: string, column: string): Promise<string> {
  const [r] = await q<{ n: number; h: string }>(database, `SELECT count(*)::int AS n, md5(string_agg(id::text || ':' || coalesce("${column}"::text, '~'), ',' ORDER BY id)) AS h FROM profiles`);
  return `${r.n}:${r.h}`;
}

/**
 * A service writing one column in a loop: UPDATEs of its own rows and INSERTs, each remembered
 * (id -> last value written), every error counted.
 */
function service(database: string, column: string, ids: string[], tag: string) {
  const client = new Client({ connectionString: serverUrl(database) });
  client.on("error", () => undefined);
  const written = new Map<string, string>();
  const errors: string[] = [];
  let col = column;
  let running = true;
  let writes = 0;
  const done = (async () => {
    await client.connect();
    for (let i = 0; running; i++) {
      const value = `${tag}-${i}`;
      try {
        if (i % 5 === 4) {
          const { rows } = await client.query(`INSERT INTO profiles (user_id, "${col}") VALUES (gen_random_uuid(), $1) RETURNING id`, [value]);
          written.set(rows[0].id, value);
        } else {
          const id = ids[i % ids.length];
          await client.query(`UPDATE profiles SET "${col}" = $1 WHERE id = $2`, [value, id]);
          written.set(id, value);
        }
        writes++;
      } catch (error) {
        errors.push((error as Error).message);
      }
      await sleep(5);
    }
    await client.end();
  })();
  return {
    written, errors,
    get writes() { return writes; },
    /** The same service after its own rollout: it writes `name` from now on. */
    writeAs(name: string) { col = name; },
    async stop() { running = false; await done; },
  };
}

async function untilWrites(s: { writes: number }, n: number): Promise<void> {
  const start = s.writes;
  while (s.writes < start + n) await sleep(20);
}

describe("expand/contract: a rename with old and new services writing", () => {
  const { dbs, copy, env } = migratedWithCopy("evolve_rename");
  const change: EvolveChange = { kind: "rename-column", table: "profiles", from: "phone", to: "phone_number", type: "text", notNull: false };

  it("0 errors, 0 mismatches; complete refuses while the old name is written; each phase reverts keeping every value", async () => {
    const apidb = dbs.names.apidb;
    await q(apidb, `INSERT INTO profiles (user_id, phone) SELECT gen_random_uuid(), 'seed-' || g FROM generate_series(1, 3000) g`);
    const ids = (await q<{ id: string }>(apidb, `SELECT id FROM profiles ORDER BY id`)).map((r) => r.id);
    addRendered(copy(), "RenamePhone", 1796000000000, [change]);
    const runEnv = { ...env(), MIGRATION_BACKFILL_BATCH: "500", MIGRATION_CONTRACT_IDLE: "2s" };

    const old = service(apidb, "phone", ids.slice(0, 1500), "old");
    await untilWrites(old, 10);
    const expand = await runCli(["migration:run", "--db", "apidb"], runEnv);
    expect(expand.code).toBe(0);
    expect(expand.stdout).toContain("apidb: RenamePhone1796000000001 (contract) waits for migration:complete");
    expect(expand.stdout).toContain("applied RenamePhone1796000000000");
    expect(expand.stderr).toMatch(/apidb: backfill profiles: done, \d+\/\d+ rows/);

    const show = await runCli(["migration:show", "--db", "apidb"], runEnv);
    expect(show.stdout).toContain("[ ] RenamePhone1796000000001  (expanded, contract pending: migration:complete)");

    const fresh = service(apidb, "phone_number", ids.slice(1500), "new");
    await untilWrites(fresh, 20);
    await untilWrites(old, 20);

    // The old service still writes phone: refused, nothing changed.
    const refused = await runCli(["migration:complete", "--db", "apidb"], runEnv);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/^error: apidb: RenamePhone1796000000001: a client wrote profiles\.phone \d+s ago \(at .+\), within MIGRATION_CONTRACT_IDLE 2s: an old service may still use it; wait, or contract anyway with --force$/m);
    expect((await q(apidb, `SELECT 1 FROM information_schema.columns WHERE table_name = 'profiles' AND column_name = 'phone'`)).length).toBe(1);

    // The old service is rolled out (it now writes the new name), and stays so for longer than the idle window.
    await old.stop();
    const [{ mismatches }] = await q<{ mismatches: number }>(apidb, `SELECT count(*)::int AS mismatches FROM profiles WHERE phone IS DISTINCT FROM phone_number`);
    expect(mismatches).toBe(0);
    const [{ last }] = await q<{ last: Date }>(apidb, `SELECT old_written_at AS last FROM migrations_evolve WHERE id = 'profiles.phone'`);
    expect(last).toBeInstanceOf(Date);
    await sleep(Math.max(0, last.getTime() + 3000 - Date.now()));

    const complete = await runCli(["migration:complete", "--db", "apidb"], runEnv);
    expect(complete.stderr).toBe("");
    expect(complete.code).toBe(0);
    expect(complete.stdout).toMatch(/apidb: RenamePhone1796000000001: profiles\.phone last written by a client \d+s ago/);
    expect(complete.stdout).toContain("applied RenamePhone1796000000001");
    await untilWrites(fresh, 20);
    await fresh.stop();

    expect(old.errors).toEqual([]);
    expect(fresh.errors).toEqual([]);
    // Every value either service wrote is in phone_number.
    const now = new Map((await q<{ id: string; v: string | null }>(apidb, `SELECT id, phone_number AS v FROM profiles`)).map((r) => [r.id, r.v]));
    const lost = [...old.written, ...fresh.written].filter(([id, v]) => now.get(id) !== v);
    expect(lost).toEqual([]);
    expect(old.written.size).toBeGreaterThan(20);
    expect(fresh.written.size).toBeGreaterThan(20);

    const after = await digest(apidb, "phone_number");
    // Undo the contract (the last run): phone is back, every value in it.
    const undoContract = await runCli(["migration:revert"], runEnv);
    expect(undoContract.code).toBe(0);
    expect(undoContract.stdout).toContain("reverted RenamePhone1796000000001");
    expect(await digest(apidb, "phone")).toBe(after);
    expect(await digest(apidb, "phone_number")).toBe(after);
    // Undo the expand: phone_number and the trigger gone, phone holds every value.
    const undoExpand = await runCli(["migration:revert", "--db", "apidb", "--steps", "1"], runEnv);
    expect(undoExpand.code).toBe(0);
    expect(await digest(apidb, "phone")).toBe(after);
    expect(await q(apidb, `SELECT 1 FROM information_schema.columns WHERE table_name = 'profiles' AND column_name = 'phone_number'`)).toEqual([]);
    expect(await q(apidb, `SELECT 1 FROM pg_trigger WHERE tgname LIKE 'migrations_evolve%'`)).toEqual([]);
  }, 300_000);
});

describe("expand/contract: text -> varchar(40) with both services writing", () => {
  const { dbs, copy, env } = migratedWithCopy("evolve_type");
  const change: EvolveChange = { kind: "change-type", table: "profiles", column: "address", fromType: "text", toType: "character varying(40)", notNull: false };

  it("no rewrite, 0 errors, 0 mismatches; a differing row stops the contract with its count and key; reverts keep every value", async () => {
    const apidb = dbs.names.apidb;
    await q(apidb, `INSERT INTO profiles (user_id, address) SELECT gen_random_uuid(), 'street ' || g FROM generate_series(1, 3000) g`);
    await q(apidb, `CREATE INDEX idx_profiles_address ON profiles (address)`);
    const ids = (await q<{ id: string }>(apidb, `SELECT id FROM profiles ORDER BY id`)).map((r) => r.id);
    const [{ before }] = await q<{ before: string }>(apidb, `SELECT pg_relation_filenode('profiles')::text AS before`);
    addRendered(copy(), "NarrowAddress", 1796000000100, [change]);
    const runEnv = { ...env(), MIGRATION_BACKFILL_BATCH: "500", MIGRATION_CONTRACT_IDLE: "0" };

    const old = service(apidb, "address", ids.slice(0, 1500), "old");
    await untilWrites(old, 10);
    expect((await runCli(["migration:run", "--db", "apidb"], runEnv)).code).toBe(0);
    const fresh = service(apidb, "address__new", ids.slice(1500), "new");
    await untilWrites(fresh, 20);
    await old.stop();
    await fresh.stop();

    // A row whose new value does not give the old one back: the contract refuses, drops nothing.
    await q(apidb, `ALTER TABLE profiles DISABLE TRIGGER migrations_evolve_profiles_address`);
    await q(apidb, `UPDATE profiles SET address__new = 'differs' WHERE id = $1`, [ids[7]]);
    await q(apidb, `ALTER TABLE profiles ENABLE TRIGGER migrations_evolve_profiles_address`);
    const refused = await runCli(["migration:complete", "--db", "apidb", "--force"], runEnv);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain(`profiles: 1 row where address and address__new differ (first key: ${ids[7]}): nothing dropped`);
    expect((await q(apidb, `SELECT 1 FROM information_schema.columns WHERE table_name = 'profiles' AND column_name = 'address__new'`)).length).toBe(1);
    await q(apidb, `UPDATE profiles SET address__new = address WHERE id = $1`, [ids[7]]);

    // The new version, writing `address` (its name for the column; the temporary name is the trigger's business).
    const rolled = service(apidb, "address", ids.slice(1500), "rolled");
    await untilWrites(rolled, 10);
    const complete = await runCli(["migration:complete", "--db", "apidb"], runEnv);
    expect(complete.code).toBe(0);
    await untilWrites(rolled, 20);
    await rolled.stop();
    expect(rolled.errors).toEqual([]);
    expect(old.errors).toEqual([]);
    expect(fresh.errors).toEqual([]);

    const [col] = await q<{ type: string }>(apidb, `SELECT format_type(atttypid, atttypmod) AS type FROM pg_attribute WHERE attrelid = 'profiles'::regclass AND attname = 'address'`);
    expect(col.type).toBe("character varying(40)");
    const [{ after }] = await q<{ after: string }>(apidb, `SELECT pg_relation_filenode('profiles')::text AS after`);
    expect(after).toBe(before); // the table was never rewritten
    expect((await q(apidb, `SELECT 1 FROM pg_indexes WHERE indexname = 'idx_profiles_address' AND indexdef LIKE '%(address)%'`)).length).toBe(1);
    const now = new Map((await q<{ id: string; v: string | null }>(apidb, `SELECT id, address AS v FROM profiles`)).map((r) => [r.id, r.v]));
    const written = new Map([...old.written, ...fresh.written, ...rolled.written]);
    expect([...written].filter(([id, v]) => now.get(id) !== v)).toEqual([]);

    const contracted = await digest(apidb, "address");
    expect((await runCli(["migration:revert"], runEnv)).code).toBe(0);
    const [back] = await q<{ type: string }>(apidb, `SELECT format_type(atttypid, atttypmod) AS type FROM pg_attribute WHERE attrelid = 'profiles'::regclass AND attname = 'address'`);
    expect(back.type).toBe("text");
    expect(await digest(apidb, "address")).toBe(contracted);
    expect(await digest(apidb, "address__new")).toBe(contracted);
    expect((await runCli(["migration:revert", "--db", "apidb", "--steps", "1"], runEnv)).code).toBe(0);
    expect(await digest(apidb, "address")).toBe(contracted);
  }, 300_000);
});

describe("backfill", () => {
  const { dbs, copy, env } = migratedWithCopy("evolve_backfill");

  it("killed by SIGKILL past half way, resumes after its last batch: every row updated exactly once", async () => {
    const apidb = dbs.names.apidb;
    const rowsTotal = 20000;
    await q(apidb, `CREATE TABLE counted (id int PRIMARY KEY, n int NOT NULL DEFAULT 0)`);
    await q(apidb, `INSERT INTO counted (id) SELECT g FROM generate_series(1, ${rowsTotal}) g`);
    // Every row update counted (a statement trigger with a transition table); each batch made slow enough to be caught.
    await q(apidb, `CREATE TABLE updates (rows int NOT NULL)`);
    await q(apidb, `CREATE FUNCTION count_updates() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN INSERT INTO updates SELECT count(*) FROM changed; PERFORM pg_sleep(0.02); RETURN NULL; END $$`);
    await q(apidb, `CREATE TRIGGER count_updates AFTER UPDATE ON counted REFERENCING NEW TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION count_updates()`);
    copy().addCode("apidb", "BumpCounted", 1796000000200,
      `await backfill(queryRunner, { table: "counted", set: "n = n + 1", batchSize: 200 });`, ``);
    const file = path.join(copy().root, "apidb", "1796000000200-BumpCounted.ts");
    fs.writeFileSync(file, fs.readFileSync(file, "utf8")
      .replace(`import { MigrationInterface, QueryRunner } from "typeorm";`, `import { MigrationInterface, QueryRunner } from "typeorm";\nimport { backfill } from "ai-micro-migrations/evolve";`)
      .replace(`implements MigrationInterface {`, `implements MigrationInterface {\n    transaction = false;`));

    const child = spawn(process.execPath, [CLI, "migration:run", "--db", "apidb"], { env: cliEnv(env()), stdio: "ignore" });
    let gone = false;
    const exited = new Promise((resolve) => child.on("exit", (code) => { gone = true; resolve(code); }));
    // Killed once the saved cursor is past half way (read from the database, not guessed from time).
    for (;;) {
      if (gone) throw new Error("migration:run ended before its backfill was half way");
      const [row] = await q<{ n: string }>(apidb, `SELECT rows_scanned AS n FROM migrations_backfill WHERE table_name = 'counted'`).catch(() => []);
      if (row && Number(row.n) >= rowsTotal / 2) break;
      await sleep(20);
    }
    child.kill("SIGKILL");
    await exited;
    const [{ n: atKill }] = await q<{ n: number }>(apidb, `SELECT coalesce(sum(rows), 0)::int AS n FROM updates`);
    expect(atKill).toBeGreaterThanOrEqual(rowsTotal / 2);
    expect(atKill).toBeLessThan(rowsTotal);

    const resumed = await runCli(["migration:run", "--db", "apidb"], env());
    expect(resumed.code).toBe(0);
    expect(resumed.stderr).toMatch(/apidb: backfill counted: started, resuming after key \d+ \(\d+ rows done before\)/);
    const [{ n: total }] = await q<{ n: number }>(apidb, `SELECT sum(rows)::int AS n FROM updates`);
    expect(total).toBeLessThanOrEqual(rowsTotal * 1.1);
    expect(total).toBe(rowsTotal); // no batch done twice
    expect(await q(apidb, `SELECT n, count(*)::int AS rows FROM counted GROUP BY n`)).toEqual([{ n: 1, rows: rowsTotal }]);
  }, 300_000);

  it("refuses inside the migration's transaction", async () => {
    const ds = new DataSource({ type: "postgres", url: serverUrl(dbs.names.apidb) });
    await ds.initialize();
    const qr = ds.createQueryRunner();
    try {
      await qr.startTransaction();
      await expect(backfill(qr, { table: "profiles", set: "name = name" })).rejects.toThrow("backfill runs in short transactions of its own: declare `transaction = false` in the migration");
      await qr.rollbackTransaction();
    } finally {
      await qr.release();
      await ds.destroy();
    }
  });
});

describe("backfill throttle on a real streaming replica", () => {
  it("waits while the replica's replay is paused, goes on once it resumes", async () => {
    const pair = await startPrimaryWithStandby();
    const ds = new DataSource({ type: "postgres", url: pair.primaryUrl });
    try {
      const standby = new Client({ connectionString: pair.standbyUrl });
      await standby.connect();
      // The standby reports its replay position every second (default 10 s), so a resume is seen soon.
      await standby.query(`ALTER SYSTEM SET wal_receiver_status_interval = '1s'`);
      await standby.query(`SELECT pg_reload_conf()`);
      const primary = new Client({ connectionString: pair.primaryUrl });
      await primary.connect();
      await primary.query(`CREATE TABLE filled (id int PRIMARY KEY, v int)`);
      await primary.query(`INSERT INTO filled (id) SELECT g FROM generate_series(1, 20000) g`);
      // At least 20 ms per batch: 100 batches cannot end before the lag passes 1 s.
      await primary.query(`CREATE FUNCTION slow() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(0.02); RETURN NULL; END $$`);
      await primary.query(`CREATE TRIGGER slow AFTER UPDATE ON filled FOR EACH STATEMENT EXECUTE FUNCTION slow()`);
      await standby.query(`SELECT pg_wal_replay_pause()`);

      await ds.initialize();
      const qr = ds.createQueryRunner();
      const events: BackfillEvent[] = [];
      attachRuntime(qr, { migration: "Throttled1", timeouts: DEFAULT_TIMEOUTS, settings: { batchSize: 200, maxReplicaLag: "1s", contractIdle: "5min" } });
      const running = backfill(qr, { table: "filled", set: "v = id", onProgress: (e) => events.push(e) });
      const result = running.then((r) => r);
      while (!events.some((e) => e.state === "throttled")) {
        if (events.some((e) => e.state === "done")) throw new Error("the backfill ended without waiting for the paused replica");
        await sleep(50);
      }
      const throttled = events.find((e) => e.state === "throttled")!;
      expect(throttled.reason).toMatch(/^replica .+ is \d+\.\ds behind in replay \(max 1s, MIGRATION_BACKFILL_MAX_REPLICA_LAG\)$/);
      // While paused, the cursor does not move.
      const cursor = async () => Number((await primary.query(`SELECT rows_scanned FROM migrations_backfill WHERE table_name = 'filled'`)).rows[0].rows_scanned);
      const heldAt = await cursor();
      await sleep(3000);
      expect(await cursor()).toBe(heldAt);
      expect(heldAt).toBeLessThan(20000);
      expect(events.some((e) => e.state === "resumed")).toBe(false);

      await standby.query(`SELECT pg_wal_replay_resume()`);
      const done = await result;
      expect(done.rowsScanned).toBe(20000);
      expect(done.throttledSeconds).toBeGreaterThanOrEqual(3);
      expect(events.map((e) => e.state)).toContain("resumed");
      expect((await primary.query(`SELECT count(*)::int AS n FROM filled WHERE v IS DISTINCT FROM id`)).rows[0].n).toBe(0);
      await qr.release();
      await standby.end();
      await primary.end();
    } finally {
      if (ds.isInitialized) await ds.destroy();
      await pair.stop();
    }
  }, 300_000);
});

describe("expand/contract: a dropped column", () => {
  const { dbs, copy, env } = migratedWithCopy("evolve_drop");
  const change: EvolveChange = { kind: "drop-column", table: "profiles", column: "address", type: "text", notNull: false };

  it("is a contract only: held back by run, dropped by complete, brought back (empty) by revert", async () => {
    const apidb = dbs.names.apidb;
    const files = renderEvolveMigrations("DropAddress", 1796000000300, [change]);
    expect(files.map((f) => [f.className, f.phase])).toEqual([["DropAddress1796000000300", "contract"]]);
    addRendered(copy(), "DropAddress", 1796000000300, [change]);
    const column = async () => (await q(apidb, `SELECT 1 FROM information_schema.columns WHERE table_name = 'profiles' AND column_name = 'address'`)).length;

    const run = await runCli(["migration:run", "--db", "apidb"], env());
    expect(run.code).toBe(0);
    expect(run.stdout).toContain("apidb: DropAddress1796000000300 (contract) waits for migration:complete");
    expect(await column()).toBe(1);

    const complete = await runCli(["migration:complete", "--db", "apidb"], env());
    expect(complete.code).toBe(0);
    expect(complete.stdout).toContain("apidb: DropAddress1796000000300: profiles.address not recorded (nothing watched it: a dropped column has no expand)");
    expect(await column()).toBe(0);

    expect((await runCli(["migration:revert"], env())).code).toBe(0);
    expect(await column()).toBe(1);
  }, 120_000);
});
