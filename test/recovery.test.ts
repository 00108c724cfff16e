// Recovery: a deploy interrupted by a server restart, a server that stays away, or a hard stop
// (second Ctrl-C) ends in a known state. Servers that are restarted or stopped are local clusters of
// their own (never the shared test server); authdb and apidb stay on the shared one.
import { ChildProcess, spawn } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { Client } from "pg";
import { DATABASES, DbName } from "../src/databases";
import { readApplied, readHistory } from "../src/runner/history";
import { LOCK_KEY, lockKeyOf } from "../src/runner/locks";
import { clusterUrl, destroyCluster, ensureCluster, startCluster, stopCluster } from "../src/postgres/local-cluster";
import { CLI, cliEnv, runCli } from "./support/cli";
import { serverUrl, testDatabases, withClient } from "./support/databases";
import { copyMigrations, MigrationsCopy } from "./support/migrations-dir";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const withDb = (url: string, database: string) => {
  const u = new URL(url);
  u.pathname = `/${database}`;
  return u.toString();
};

async function query<T>(url: string, sql: string, params: unknown[] = []): Promise<T[]> {
  const c = new Client({ connectionString: url });
  c.on("error", () => undefined);
  await c.connect();
  try {
    return (await c.query(sql, params)).rows as T[];
  } finally {
    await c.end().catch(() => undefined);
  }
}

/** Polls until `probe` is true (an event, not a speed: the timeout is generous). */
async function waitFor(what: string, probe: () => Promise<boolean>, timeoutMs = 90_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await probe().catch(() => false)) return;
    await sleep(50);
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** A CLI run in the background, whose output can be watched and which can be sent signals. */
function startCli(args: string[], env: Record<string, string>): { child: ChildProcess; out: { stdout: string; stderr: string }; done: Promise<number | null> } {
  const child = spawn(process.execPath, [CLI, ...args], { cwd: path.resolve(__dirname, ".."), env: cliEnv(env), stdio: ["ignore", "pipe", "pipe"] });
  const out = { stdout: "", stderr: "" };
  child.stdout!.on("data", (d) => (out.stdout += d));
  child.stderr!.on("data", (d) => (out.stderr += d));
  const done = new Promise<number | null>((resolve) => child.on("close", (code) => resolve(code)));
  return { child, out, done };
}

/** A server of its own, which the test restarts or stops. */
function ownServer() {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), "aimig-recovery-"));
  fs.chmodSync(root, 0o755);
  let url = "";
  beforeAll(async () => {
    url = clusterUrl((await ensureCluster(root, { fast: true })).info);
  }, 180_000);
  afterAll(() => destroyCluster(root));
  return {
    url: () => url,
    restart: () => {
      stopCluster(root);
      startCluster(root);
    },
    stop: () => stopCluster(root),
    start: () => startCluster(root),
  };
}

/** Databases named for one test: `own` lives on the restartable server, the others on the shared one. */
function layout(own: DbName, ownUrl: string, label: string, copy: MigrationsCopy, extra: Record<string, string> = {}) {
  const suffix = `${label}_${Math.random().toString(36).slice(2, 8)}`;
  const names = {} as Record<DbName, string>;
  const urls = {} as Record<DbName, string>;
  const env: Record<string, string> = {
    MIGRATIONS_DIR: copy.root,
    MIGRATION_BACKUP_DIR: path.join(os.tmpdir(), `aimig-recovery-${suffix}`),
    MIGRATION_CONNECT_TIMEOUT_MS: "5000",
    ...extra,
  };
  for (const db of DATABASES) {
    names[db] = `${db}_${suffix}`;
    urls[db] = db === own ? withDb(ownUrl, names[db]) : serverUrl(names[db]);
    env[`${db.toUpperCase()}_URL`] = urls[db];
  }
  const drop = async () => {
    for (const db of DATABASES) {
      const admin = db === own ? withDb(ownUrl, "postgres") : serverUrl("postgres");
      await query(admin, `DROP DATABASE IF EXISTS "${names[db]}" WITH (FORCE)`).catch(() => undefined);
    }
    fs.rmSync(env.MIGRATION_BACKUP_DIR, { recursive: true, force: true });
  };
  return { names, urls, env, drop };
}

const maintenanceOf = async (adminUrl: string) =>
  (await query<{ v: string; u: string }>(adminUrl, `SELECT value::text AS v, updated_at::text AS u FROM system_settings WHERE key = 'maintenance_mode'`))[0];

/** Every file in the copy applied exactly once in each database, recorded up once more than down. */
async function expectAppliedOnce(urls: Record<DbName, string>, copy: MigrationsCopy): Promise<void> {
  for (const db of DATABASES) {
    const files = fs.readdirSync(path.join(copy.root, db)).filter((f) => f.endsWith(".ts")).sort().map((f) => {
      const [ts, name] = f.replace(/\.ts$/, "").split("-");
      return `${name}${ts}`;
    });
    const c = new Client({ connectionString: urls[db] });
    await c.connect();
    try {
      expect((await readApplied(c)).map((a) => a.name)).toEqual(files);
      const history = await readHistory(c);
      for (const name of files) {
        const count = (direction: string) => history.filter((h) => h.name === name && h.direction === direction).length;
        expect({ name, net: count("up") - count("down") }).toEqual({ name, net: 1 });
      }
    } finally {
      await c.end();
    }
  }
}

/** A backend of `url`'s server running `text` (pg_sleep of a migration, a waiting pg_dump). */
const running = (url: string, condition: string) => async () =>
  (await query<{ n: number }>(withDb(url, "postgres"), `SELECT count(*)::int AS n FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND ${condition}`))[0].n > 0;

describe("a server restart mid-deploy: reconnect, then finish", () => {
  const server = ownServer();
  let copy: MigrationsCopy;
  beforeAll(() => {
    copy = copyMigrations();
  });
  afterAll(() => copy.remove());

  it("restart during admindb's migration: exit 0, each migration applied once, maintenance as before", async () => {
    const l = layout("admindb", server.url(), "rmig", copy);
    try {
      expect((await runCli(["migration:run"], l.env)).code).toBe(0);
      const before = await maintenanceOf(l.urls.admindb);
      copy.add("authdb", "RecA", 1795800000001, `ALTER TABLE users ADD COLUMN reca integer`, `ALTER TABLE users DROP COLUMN reca`);
      copy.add("apidb", "RecB", 1795800000002, `ALTER TABLE profiles ADD COLUMN recb integer`, `ALTER TABLE profiles DROP COLUMN recb`);
      copy.addCode("admindb", "RecSlow", 1795800000003,
        `await queryRunner.query("SELECT pg_sleep(4)"); await queryRunner.query("ALTER TABLE system_logs ADD COLUMN recslow integer");`,
        `await queryRunner.query("ALTER TABLE system_logs DROP COLUMN recslow");`);
      const run = startCli(["migration:run"], l.env);
      await waitFor("admindb's migration to sleep", running(server.url(), `query LIKE '%pg_sleep(4)%' AND state = 'active'`));
      server.restart();
      const code = await run.done;
      expect({ code, stderr: run.out.stderr, stdout: run.out.stdout }).toEqual({ code: 0, stdout: expect.anything(), stderr: expect.stringMatching(/admindb: connection to .* lost[^]*admindb: reconnected to .* deploy lock taken again/) });
      expect(run.out.stdout).toMatch(/admindb: applied RecSlow1795800000003/);
      await expectAppliedOnce(l.urls, copy);
      expect(await maintenanceOf(l.urls.admindb)).toEqual(before);
    } finally {
      fs.rmSync(path.join(copy.root, "authdb", "1795800000001-RecA.ts"), { force: true });
      fs.rmSync(path.join(copy.root, "apidb", "1795800000002-RecB.ts"), { force: true });
      fs.rmSync(path.join(copy.root, "admindb", "1795800000003-RecSlow.ts"), { force: true });
      await l.drop();
    }
  });

  it("restart during the backup: the dump is taken again, exit 0, each migration applied once, maintenance as before", async () => {
    const l = layout("admindb", server.url(), "rbak", copy);
    let hold: Client | undefined;
    try {
      expect((await runCli(["migration:run"], l.env)).code).toBe(0);
      const before = await maintenanceOf(l.urls.admindb);
      copy.add("admindb", "RecBak", 1795800000004, `ALTER TABLE system_settings ADD COLUMN recbak integer`, `ALTER TABLE system_settings DROP COLUMN recbak`);
      // pg_dump waits for this lock, so the restart finds it mid-backup.
      hold = new Client({ connectionString: l.urls.admindb });
      hold.on("error", () => undefined);
      await hold.connect();
      await hold.query(`BEGIN; LOCK TABLE system_logs IN ACCESS EXCLUSIVE MODE`);
      const run = startCli(["migration:run"], l.env);
      await waitFor("pg_dump to wait for its lock", running(server.url(), `application_name LIKE '% pg_dump' AND wait_event_type = 'Lock'`));
      server.restart(); // ends the holder too
      const code = await run.done;
      expect({ code, stderr: run.out.stderr }).toEqual({ code: 0, stderr: expect.stringMatching(/admindb: reconnected to .* deploy lock taken again/) });
      await expectAppliedOnce(l.urls, copy);
      expect(await maintenanceOf(l.urls.admindb)).toEqual(before);
      // The backup itself is whole: one run directory, its archive verified by the manifest.
      // The newest by its manifest (run ids of one second do not sort by time).
      const manifests = fs.readdirSync(l.env.MIGRATION_BACKUP_DIR).filter((d) => fs.existsSync(path.join(l.env.MIGRATION_BACKUP_DIR, d, "manifest.json")))
        .map((d) => JSON.parse(fs.readFileSync(path.join(l.env.MIGRATION_BACKUP_DIR, d, "manifest.json"), "utf8")));
      const manifest = manifests.sort((a, b) => Date.parse(a.createdAt) - Date.parse(b.createdAt)).pop();
      expect(manifest.databases.map((d: { db: string }) => d.db)).toEqual(["admindb"]);
    } finally {
      await hold?.end().catch(() => undefined);
      fs.rmSync(path.join(copy.root, "admindb", "1795800000004-RecBak.ts"), { force: true });
      await l.drop();
    }
  });
});

describe("another run takes the deploy lock while a run waits for its server", () => {
  const server = ownServer();
  let copy: MigrationsCopy;
  beforeAll(() => {
    copy = copyMigrations();
  });
  afterAll(() => copy.remove());

  it("the run stops, undoes what it applied elsewhere, and touches nothing under the other run's lock", async () => {
    const l = layout("admindb", server.url(), "taken", copy);
    const other = new Client({ connectionString: withDb(server.url(), "postgres"), application_name: "ai-micro-migrations run 20990101T000000Z-beef" });
    other.on("error", () => undefined);
    try {
      expect((await runCli(["migration:run"], l.env)).code).toBe(0);
      copy.add("authdb", "TakenA", 1795800000031, `ALTER TABLE users ADD COLUMN takena integer`, `ALTER TABLE users DROP COLUMN takena`);
      copy.addCode("admindb", "TakenSlow", 1795800000032,
        `await queryRunner.query("SELECT pg_sleep(coalesce(nullif(current_setting('aimig.sleep', true), ''), '0')::float)"); await queryRunner.query("ALTER TABLE system_logs ADD COLUMN takenslow integer");`,
        `await queryRunner.query("ALTER TABLE system_logs DROP COLUMN takenslow");`);
      await query(withDb(server.url(), "postgres"), `ALTER DATABASE "${l.names.admindb}" SET aimig.sleep = '60'`);
      const run = startCli(["migration:run"], l.env);
      await waitFor("admindb's migration to sleep", running(server.url(), `query LIKE '%pg_sleep(coalesce%' AND state = 'active'`));
      // Frozen while its server restarts and another run takes admindb's lock: no race to win.
      run.child.kill("SIGSTOP");
      server.restart();
      await other.connect();
      await other.query(`SELECT pg_advisory_lock($1::int, $2::int)`, [LOCK_KEY, lockKeyOf(l.names.admindb)]);
      run.child.kill("SIGCONT");
      expect(await run.done).toBe(1);
      expect(run.out.stderr).toMatch(/admindb: .*run 20990101T000000Z-beef took the deploy lock while this run was reconnecting/);
      expect(run.out.stderr).toMatch(/^authdb: undone TakenA1795800000031 \(down\)$/m);
      expect(await appliedIn(l.urls.authdb)).not.toContain("TakenA1795800000031");
      expect(await appliedIn(l.urls.admindb)).not.toContain("TakenSlow1795800000032");
      // The other run is done: one plain rerun finishes, maintenance as the first run found it.
      await other.end();
      await query(withDb(server.url(), "postgres"), `ALTER DATABASE "${l.names.admindb}" SET aimig.sleep = '0'`);
      const rerun = await runCli(["migration:run"], l.env);
      expect({ code: rerun.code, stderr: rerun.stderr }).toEqual({ code: 0, stderr: "" });
      await expectAppliedOnce(l.urls, copy);
      expect(JSON.parse((await maintenanceOf(l.urls.admindb)).v)).toMatchObject({ enabled: false });
    } finally {
      await other.end().catch(() => undefined);
      fs.rmSync(path.join(copy.root, "authdb", "1795800000031-TakenA.ts"), { force: true });
      fs.rmSync(path.join(copy.root, "admindb", "1795800000032-TakenSlow.ts"), { force: true });
      await l.drop();
    }
  });
});

describe("a server that stays away longer than MIGRATION_RECONNECT_BUDGET", () => {
  const server = ownServer();
  let copy: MigrationsCopy;
  beforeAll(() => {
    copy = copyMigrations();
  });
  afterAll(() => copy.remove());

  it("others undone, maintenance left on marked undo_failed naming it, exit 1; one rerun once it is back finishes and restores maintenance", async () => {
    const l = layout("apidb", server.url(), "away", copy, { MIGRATION_RECONNECT_BUDGET: "3s" });
    try {
      expect((await runCli(["migration:run"], l.env)).code).toBe(0);
      const before = await maintenanceOf(l.urls.admindb);
      copy.add("authdb", "AwayA", 1795800000011, `ALTER TABLE users ADD COLUMN awaya integer`, `ALTER TABLE users DROP COLUMN awaya`);
      copy.addCode("apidb", "AwaySlow", 1795800000012,
        // Sleeps as long as the database's aimig.sleep says: 60 s now, nothing on the rerun.
        `await queryRunner.query("SELECT pg_sleep(coalesce(nullif(current_setting('aimig.sleep', true), ''), '0')::float)"); await queryRunner.query("ALTER TABLE profiles ADD COLUMN awayslow integer");`,
        `await queryRunner.query("ALTER TABLE profiles DROP COLUMN awayslow");`);
      copy.add("admindb", "AwayC", 1795800000013, `ALTER TABLE system_logs ADD COLUMN awayc integer`, `ALTER TABLE system_logs DROP COLUMN awayc`);
      await query(withDb(server.url(), "postgres"), `ALTER DATABASE "${l.names.apidb}" SET aimig.sleep = '60'`);
      const run = startCli(["migration:run"], l.env);
      await waitFor("apidb's migration to sleep", running(server.url(), `query LIKE '%pg_sleep(coalesce%' AND state = 'active'`));
      server.stop();
      const stopped = Date.now();
      const code = await run.done;
      const waited = Date.now() - stopped;
      expect(code).toBe(1);
      // Within the budget (3 s) plus what undoing authdb and marking maintenance take, nowhere near the 60 s sleep.
      expect(waited).toBeLessThan(25_000);
      expect(run.out.stderr).toMatch(/apidb: .* is unreachable: gave up after 3 s \(MIGRATION_RECONNECT_BUDGET\)/);
      expect(run.out.stderr).toMatch(/maintenance mode is left ON, marked undo_failed \(apidb unreachable\)/);
      expect(run.out.stderr).toMatch(/^authdb: back where it was/m);
      expect(run.out.stderr).toMatch(/^apidb: UNREACHABLE: AwaySlow1795800000012 was running when it went away/m);
      // authdb is undone; admindb never got its migration.
      expect(await appliedIn(l.urls.authdb)).not.toContain("AwayA1795800000011");
      const marked = JSON.parse((await maintenanceOf(l.urls.admindb)).v);
      expect(marked).toMatchObject({ enabled: true, undo_failed: true, unreachable: ["apidb"] });

      // A plain run while it is still away does not turn maintenance off.
      const early = await runCli(["db:maintenance", "status"], l.env);
      expect(early.stdout).toMatch(/ON .*held by run \S+, which is no longer running; it could not undo itself \(apidb unreachable\)/);

      server.start();
      await query(withDb(server.url(), "postgres"), `ALTER DATABASE "${l.names.apidb}" SET aimig.sleep = '0'`);
      const rerun = await runCli(["migration:run"], l.env);
      expect({ code: rerun.code, stderr: rerun.stderr }).toEqual({ code: 0, stderr: expect.stringMatching(/found maintenance_mode left ON by run \S+, which could not undo itself \(apidb unreachable\); this run goes forward/) });
      expect(rerun.stderr).toMatch(/maintenance_mode put back to its value before run/);
      await expectAppliedOnce(l.urls, copy);
      expect(await maintenanceOf(l.urls.admindb)).toEqual(before);
    } finally {
      server.start();
      await l.drop();
    }
  });
});

async function appliedIn(url: string): Promise<string[]> {
  const c = new Client({ connectionString: url });
  await c.connect();
  try {
    return (await readApplied(c)).map((a) => a.name);
  } finally {
    await c.end();
  }
}

describe("Ctrl-C", () => {
  const dbs = testDatabases("ctrlc");
  let copy: MigrationsCopy;
  const env = () => ({ ...dbs.env, MIGRATIONS_DIR: copy.root });
  beforeAll(async () => {
    copy = copyMigrations();
    expect((await runCli(["migration:run"], env())).code).toBe(0);
    copy.add("authdb", "HardA", 1795800000021, `ALTER TABLE users ADD COLUMN harda integer`, `ALTER TABLE users DROP COLUMN harda`);
    copy.addCode("apidb", "HardSlow", 1795800000022,
      `await queryRunner.query("SELECT pg_sleep(coalesce(nullif(current_setting('aimig.sleep', true), ''), '0')::float)");`, ``);
  });
  afterAll(async () => {
    copy.remove();
    await dbs.drop();
  });

  it.each([["human", false], ["--json", true]])("twice (%s): exits at once, saying what the run applied and did not undo, maintenance, and the command that finishes the job", async (_label, json) => {
    const before = await maintenanceOf(serverUrl(dbs.names.admindb));
    await withClient("postgres", (c) => c.query(`ALTER DATABASE "${dbs.names.apidb}" SET aimig.sleep = '600'`));
    // Undoing authdb's migration waits for this lock (retrying), so the second Ctrl-C finds the run undoing.
    const hold = new Client({ connectionString: serverUrl(dbs.names.authdb) });
    await hold.connect();
    try {
      const run = startCli(["migration:run", ...(json ? ["--json"] : [])], { ...env(), MIGRATION_LOCK_TIMEOUT: "50ms" });
      await waitFor("apidb's migration to sleep", running(serverUrl(), `datname = '${dbs.names.apidb}' AND query LIKE '%pg_sleep(coalesce%' AND state = 'active'`));
      await hold.query(`BEGIN; LOCK TABLE users IN ACCESS SHARE MODE`);
      run.child.kill("SIGINT");
      await waitFor("the undo to retry its lock", async () => /authdb: HardA1795800000021: lock not available/.test(run.out.stderr));
      run.child.kill("SIGINT");
      expect(await run.done).toBe(130);
      let runId: string;
      if (json) {
        const report = JSON.parse(run.out.stdout);
        runId = report.runId;
        expect(report).toMatchObject({
          status: "stopped", maintenanceOn: true, finish: "npm run migration:run",
          databases: [{ db: "authdb", left: [{ name: "HardA1795800000021", direction: "up" }] }, { db: "apidb", left: [] }, { db: "admindb", left: [] }],
        });
      } else {
        runId = /hard stop: run (\S+) exits now/.exec(run.out.stderr)![1];
        expect(run.out.stderr).toMatch(/^authdb: applied by this run and NOT undone: HardA1795800000021$/m);
        expect(run.out.stderr).toMatch(/^apidb: nothing of this run applied$/m);
        expect(run.out.stderr).toMatch(/^maintenance mode: left ON by this run$/m);
        expect(run.out.stderr).toMatch(/^to finish the job: npm run migration:run \(or to undo this run instead: npm run migration:revert\)$/m);
      }
      await hold.query("ROLLBACK");
      // The holder's liveness is checked.
      await waitFor("the run's connections to go", async () => !(await running(serverUrl(), `application_name LIKE '%run ${runId}%'`)()));
      const status = await runCli(["db:maintenance", "status"], env());
      expect(status.stdout).toContain(`held by run ${runId}, which is no longer running`);
      // The command it named finishes the job.
      await withClient("postgres", (c) => c.query(`ALTER DATABASE "${dbs.names.apidb}" SET aimig.sleep = '0'`));
      const finish = await runCli(["migration:run"], env());
      expect(finish.code).toBe(0);
      expect(await maintenanceOf(serverUrl(dbs.names.admindb))).toEqual(before);
      expect(await appliedIn(serverUrl(dbs.names.apidb))).toContain("HardSlow1795800000022");
      // Ready for the next case: both migrations pending again.
      expect((await runCli(["migration:revert", "--db", "apidb", "--steps", "1"], env())).code).toBe(0);
      expect((await runCli(["migration:revert", "--db", "authdb", "--steps", "1"], env())).code).toBe(0);
    } finally {
      await hold.end().catch(() => undefined);
    }
  });

  it.each([["db:backup"], ["migration:run"]])("during the backup (%s): no run directory is left", async (command) => {
    await withClient("postgres", (c) => c.query(`ALTER DATABASE "${dbs.names.apidb}" SET aimig.sleep = '0'`));
    const hold = new Client({ connectionString: serverUrl(dbs.names.apidb) });
    await hold.connect();
    try {
      const existing = fs.existsSync(dbs.env.MIGRATION_BACKUP_DIR) ? fs.readdirSync(dbs.env.MIGRATION_BACKUP_DIR) : [];
      await hold.query(`BEGIN; LOCK TABLE profiles IN ACCESS EXCLUSIVE MODE`);
      const run = startCli([command], env());
      await waitFor("pg_dump to wait for its lock", running(serverUrl(), `datname = '${dbs.names.apidb}' AND application_name LIKE '% pg_dump' AND wait_event_type = 'Lock'`));
      run.child.kill("SIGINT");
      expect(await run.done).toBe(1);
      expect(run.out.stderr).toMatch(/backup interrupted: its run directory was removed/);
      expect(fs.readdirSync(dbs.env.MIGRATION_BACKUP_DIR)).toEqual(existing);
    } finally {
      await hold.end().catch(() => undefined);
    }
  });
});
