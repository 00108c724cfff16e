// The reliability suite: the deploy when the world is busy. Many runners at once on a server with
// max_connections = 100 (with the connections each run holds sampled from pg_stat_activity), a run
// SIGKILLed at 20 points followed by one plain rerun, a matrix of bad input, PgBouncer in
// transaction mode, and a hot standby. Every figure it measures is printed at the end.
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { Client } from "pg";
import { DATABASES, DbName } from "../src/databases";
import { readApplied, readHistory } from "../src/runner/history";
import { LOCK_KEY, lockKeyOf } from "../src/runner/locks";
import { clusterUrl, destroyCluster, ensureCluster, startCluster, stopCluster } from "../src/postgres/local-cluster";
import { CliResult, runCli } from "./support/cli";
import { serverUrl, testDatabases, withClient } from "./support/databases";
import { copyMigrations, MigrationsCopy } from "./support/migrations-dir";
import { startPgBouncer } from "./support/pgbouncer";
import { startPrimaryWithStandby } from "./support/standby";

const figures: string[] = [];
afterAll(() => {
  console.log(`reliability figures:\n${figures.map((f) => `  ${f}`).join("\n")}`);
});

const shipped = (db: DbName, root = path.resolve(__dirname, "..", "src", "migrations")) =>
  fs.readdirSync(path.join(root, db)).filter((f) => f.endsWith(".ts")).sort().map((f) => {
    const [ts, name] = f.replace(/\.ts$/, "").split("-");
    return `${name}${ts}`;
  });

async function query<T>(url: string, sql: string, params: unknown[] = []): Promise<T[]> {
  const c = new Client({ connectionString: url });
  await c.connect();
  try {
    return (await c.query(sql, params)).rows as T[];
  } finally {
    await c.end();
  }
}

const withDb = (url: string, database: string) => {
  const u = new URL(url);
  u.pathname = `/${database}`;
  return u.toString();
};

function envFor(url: string, label: string, extra: Record<string, string> = {}): { env: Record<string, string>; names: Record<DbName, string> } {
  const suffix = `${label}_${Math.random().toString(36).slice(2, 8)}`;
  const names = {} as Record<DbName, string>;
  const env: Record<string, string> = {
    MIGRATION_BACKUP_DIR: path.join(os.tmpdir(), `aimig-rel-${suffix}`),
    MIGRATION_LOCK_WAIT_MS: "600000",
    MIGRATION_CONNECT_TIMEOUT_MS: "20000",
    ...extra,
  };
  for (const db of DATABASES) {
    names[db] = `${db}_${suffix}`;
    env[`${db.toUpperCase()}_URL`] = withDb(url, names[db]);
  }
  return { env, names };
}

/** Each migration applied exactly once, and recorded up exactly once in the history. */
async function expectAppliedOnce(url: string, names: Record<DbName, string>, root?: string): Promise<void> {
  for (const db of DATABASES) {
    const c = new Client({ connectionString: withDb(url, names[db]) });
    await c.connect();
    try {
      expect((await readApplied(c)).map((a) => a.name)).toEqual(shipped(db, root));
      const ups = (await readHistory(c)).filter((h) => h.direction === "up").map((h) => h.name);
      expect(new Set(ups).size).toBe(ups.length);
    } finally {
      await c.end();
    }
  }
}

/** Deploy locks still held on the databases `names` (other suites share the server: only ours count). */
async function ourAdvisoryLocks(url: string, names: Record<DbName, string>): Promise<number> {
  const keys = Object.values(names).map(lockKeyOf);
  const [row] = await query<{ n: number }>(url, `SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND classid = $1::int::oid AND objid = ANY($2::int[]::oid[])`, [LOCK_KEY, keys]);
  return row.n;
}

/**
 * Samples pg_stat_activity every few milliseconds: per run (its id is in application_name), how
 * many connections it holds while waiting for the deploy lock and while it holds it.
 */
function sampleConnections(url: string) {
  const client = new Client({ connectionString: url });
  const peak = { total: 0, waiting: 0, working: 0, samples: 0 };
  let stopped = false;
  const loop = (async () => {
    await client.connect();
    while (!stopped) {
      const { rows } = await client.query<{ app: string; holds: boolean }>(
        `SELECT a.application_name AS app,
                EXISTS (SELECT 1 FROM pg_locks l WHERE l.pid = a.pid AND l.locktype = 'advisory' AND l.granted AND l.classid = $1::int::oid) AS holds
         FROM pg_stat_activity a WHERE a.application_name LIKE 'ai-micro-migrations run %'`,
        [LOCK_KEY],
      );
      const runs = new Map<string, { n: number; holds: boolean }>();
      for (const r of rows) {
        const id = /run (\S+)/.exec(r.app)![1];
        const run = runs.get(id) ?? { n: 0, holds: false };
        run.n++;
        run.holds ||= r.holds;
        runs.set(id, run);
      }
      peak.samples++;
      peak.total = Math.max(peak.total, rows.length);
      for (const run of runs.values()) {
        if (run.holds) peak.working = Math.max(peak.working, run.n);
        else peak.waiting = Math.max(peak.waiting, run.n);
      }
      await new Promise((r) => setTimeout(r, 5));
    }
    await client.end();
  })();
  return async () => {
    stopped = true;
    await loop;
    return peak;
  };
}

const outcome = (runs: CliResult[]) => {
  const statuses = runs.map((r) => (r.code === 0 ? JSON.parse(r.stdout).status : `exit ${r.code}: ${r.stderr.trim()}`));
  return { applied: statuses.filter((s) => s === "applied").length, idle: statuses.filter((s) => s === "nothing-to-do").length, statuses };
};

describe("16 runners at once on a server with max_connections = 100", () => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), "aimig-rel-server-"));
  let url = "";
  beforeAll(async () => {
    fs.chmodSync(root, 0o755);
    const { info } = await ensureCluster(root, { fast: true });
    url = clusterUrl(info);
    await query(url, `ALTER SYSTEM SET max_connections = 100`);
    stopCluster(root);
    startCluster(root);
    expect((await query<{ m: string }>(url, `SHOW max_connections`))[0]).toEqual({ max_connections: "100" });
  });
  afterAll(() => destroyCluster(root));

  /** 16 runs at once on `env`, connections sampled: all exit 0, one applies, every migration once, the budget held. */
  async function sixteenAtOnce(env: Record<string, string>, names: Record<DbName, string>) {
    const stop = sampleConnections(url);
    const runs = await Promise.all(Array.from({ length: 16 }, () => runCli(["migration:run", "--json"], env)));
    const peak = await stop();
    const { applied, idle, statuses } = outcome(runs);
    expect(statuses.filter((s) => s !== "applied" && s !== "nothing-to-do")).toEqual([]);
    expect(applied).toBe(1);
    expect(idle).toBe(15);
    await expectAppliedOnce(url, names);
    expect(await ourAdvisoryLocks(url, names)).toBe(0);
    expect(peak.waiting).toBe(1);
    expect(peak.working).toBeLessThanOrEqual(1 + 3 + 3);
    return peak;
  }

  it("fresh databases: all 16 exit 0, each migration applied once; a waiting run holds one connection", async () => {
    const { env, names } = envFor(url, "fresh16");
    const peak = await sixteenAtOnce(env, names);
    figures.push(`16 runs at once, fresh databases: 16/16 exit 0 (1 applied, 15 nothing to do); connections per run: waiting ${peak.waiting}, working ${peak.working}; peak for all 16 runs ${peak.total} of 100 (${peak.samples} samples)`);
  });

  it("pending migrations on existing databases: all 16 exit 0, each migration applied once", async () => {
    const { env, names } = envFor(url, "pending16");
    const first = await runCli(["migration:run", "--json", "--to", "Init1795519558038"], env);
    expect(first.code).toBe(0);
    const peak = await sixteenAtOnce(env, names);
    figures.push(`16 runs at once, 1 migration pending (backup taken): 16/16 exit 0; connections per run: waiting ${peak.waiting}, working ${peak.working} (lock session + database + pg_dump); peak for all 16 runs ${peak.total} of 100`);
  });
});

describe("SIGKILL at 20 points of a deploy, then one plain rerun", () => {
  // A deploy with 20 progress events: 3 backups (start, end) and 7 migrations (start, end).
  const extra: Array<[DbName, string, number, string]> = [
    ["authdb", "KillA", 1795600000001, "users"],
    ["apidb", "KillB", 1795600000002, "profiles"],
    ["apidb", "KillC", 1795600000003, "profiles"],
    ["admindb", "KillD", 1795600000004, "system_logs"],
    ["admindb", "KillE", 1795600000005, "system_logs"],
    ["admindb", "KillF", 1795600000006, "system_logs"],
  ];
  let copy: MigrationsCopy;
  const template = testDatabases("killtpl");
  const maintenanceBefore = async (database: string) =>
    (await query<{ v: string; u: string }>(serverUrl(database), `SELECT value::text AS v, updated_at::text AS u FROM system_settings WHERE key = 'maintenance_mode'`))[0];

  beforeAll(async () => {
    copy = copyMigrations();
    for (const [db, name, ts, table] of extra) {
      copy.add(db, name, ts, `ALTER TABLE ${table} ADD COLUMN ${name.toLowerCase()} integer`, `ALTER TABLE ${table} DROP COLUMN ${name.toLowerCase()}`);
    }
    const r = await runCli(["migration:run", "--to", "Init1795519558038"], { ...template.env, MIGRATIONS_DIR: copy.root });
    expect(r.code).toBe(0);
  });
  afterAll(async () => {
    copy.remove();
    await template.drop();
  });

  it("every kill point: the rerun applies everything once, maintenance mode is as before, no lock is left", async () => {
    const results: string[] = [];
    const points = Array.from({ length: 20 }, (_, i) => i + 1);
    const before = await maintenanceBefore(template.names.admindb);
    // Four kill points at a time, each on its own copy of the databases.
    for (let i = 0; i < points.length; i += 4) {
      await Promise.all(points.slice(i, i + 4).map(async (point) => {
        const dbs = testDatabases(`kill${point}`);
        try {
          await withClient("postgres", async (c) => {
            for (const db of DATABASES) await c.query(`CREATE DATABASE "${dbs.names[db]}" TEMPLATE "${template.names[db]}"`);
          });
          const env = { ...dbs.env, MIGRATIONS_DIR: copy.root };
          const killed = await runCli(["migration:run"], { ...env, MIGRATION_TEST_KILL_AT: String(point) });
          expect(killed.code).toBeNull(); // it died at the point, before finishing
          const rerun = await runCli(["migration:run", "--json"], env);
          expect(rerun.stderr).toBe("");
          expect(rerun.code).toBe(0);
          await expectAppliedOnce(serverUrl(), dbs.names, copy.root);
          expect(await maintenanceBefore(dbs.names.admindb)).toEqual(before);
          expect(await ourAdvisoryLocks(serverUrl(), dbs.names)).toBe(0);
          results.push(`${point}:${JSON.parse(rerun.stdout).status}`);
        } finally {
          await dbs.drop();
        }
      }));
    }
    expect(results).toHaveLength(20);
    figures.push(`SIGKILL at 20 of 20 points (3 backups and 7 migrations, start and end of each), then one plain rerun: 20/20 exit 0, every migration applied once, maintenance_mode exactly as before, no lock left`);
  });
});

describe("bad input: one line, non-zero exit, no stack trace, no password, nothing changed", () => {
  const fresh = testDatabases("badmatrix");
  const password = decodeURIComponent(new URL(fresh.env.AUTHDB_URL).password);
  let copy: MigrationsCopy;
  beforeAll(() => {
    copy = copyMigrations();
  });
  afterAll(async () => {
    copy.remove();
    await fresh.drop();
  });
  /** A private migrations folder with one extra file for apidb. */
  const withFile = (name: string, source: string) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "aimig-bad-"));
    fs.cpSync(copy.root, dir, { recursive: true });
    fs.writeFileSync(path.join(dir, "apidb", name), source);
    return dir;
  };
  const good = (cls: string) => `import { MigrationInterface, QueryRunner } from "typeorm";\nexport class ${cls} implements MigrationInterface {\n  async up(q: QueryRunner) { await q.query("SELECT 1"); }\n  async down(q: QueryRunner) { await q.query("SELECT 1"); }\n}\n`;

  type Case = { name: string; args: string[]; env?: Record<string, string>; dir?: () => string; exit: number; line: RegExp };
  const cases: Case[] = [
    { name: "unknown database", args: ["migration:run", "--db", "usersdb"], exit: 2, line: /^error: unknown database "usersdb"/ },
    { name: "flag of another command", args: ["db:backup", "--to", "Init"], exit: 2, line: /^error: db:backup: unknown option --to \(valid: / },
    { name: "extra positional arguments", args: ["migration:show", "extra", "words"], exit: 2, line: /^error: migration:show: unexpected arguments/ },
    { name: "unknown command", args: ["migration:frob"], exit: 2, line: /^error: unknown command "migration:frob"/ },
    { name: "malformed URL", args: ["migration:run"], env: { APIDB_URL: `postgres://u:${password}@db:notaport/x` }, exit: 2, line: /^error: apidb: APIDB_URL is not a valid URL/ },
    { name: "not a postgres URL", args: ["migration:run"], env: { AUTHDB_URL: `mysql://u:${password}@127.0.0.1/x` }, exit: 2, line: /^error: authdb: AUTHDB_URL must start with postgres:\/\// },
    { name: "two names for one database", args: ["migration:run"], env: { APIDB_URL: fresh.env.AUTHDB_URL }, exit: 2, line: /^error: apidb: is configured as the same database as authdb/ },
    { name: "production without configuration", args: ["migration:run"], env: { AUTHDB_URL: "", APIDB_URL: "", ADMINDB_URL: "", NODE_ENV: "production" }, exit: 2, line: /^error: no database configured/ },
    { name: "wrong password", args: ["migration:run"], env: { APIDB_URL: fresh.env.APIDB_URL.replace(`:${encodeURIComponent(password)}@`, ":wrong-pass-123@") }, exit: 2, line: /^error: apidb: password authentication failed/ },
    { name: "unreachable server", args: ["migration:run"], env: { ADMINDB_URL: `postgres://u:${password}@127.0.0.1:1/x` }, exit: 1, line: /^error: admindb: cannot connect to 127\.0\.0\.1:1: connection refused/ },
    { name: "invalid backup compression", args: ["migration:run"], env: { MIGRATION_BACKUP_COMPRESSION: "11" }, exit: 2, line: /^error: MIGRATION_BACKUP_COMPRESSION must be a level from 0 to 9/ },
    { name: "invalid lock timeout", args: ["migration:run"], env: { MIGRATION_LOCK_TIMEOUT: "forever" }, exit: 2, line: /^error: MIGRATION_LOCK_TIMEOUT must be a duration/ },
    { name: "invalid lock wait", args: ["migration:run"], env: { MIGRATION_LOCK_WAIT_MS: "-5" }, exit: 2, line: /^error: MIGRATION_LOCK_WAIT_MS must be/ },
    { name: "invalid --keep", args: ["db:backup", "--keep", "0"], exit: 2, line: /^error: MIGRATION_BACKUP_KEEP \/ --keep must be/ },
    { name: "invalid --steps", args: ["migration:revert", "--db", "apidb", "--steps", "abc"], exit: 2, line: /^error: --steps must be a positive whole number/ },
    { name: "--steps with --to", args: ["migration:revert", "--db", "apidb", "--steps", "1", "--to", "base"], exit: 2, line: /^error: give --steps or --to, not both/ },
    { name: "unknown --to migration", args: ["migration:run", "--to", "NoSuch1234567890123"], exit: 2, line: /^error: unknown migration "NoSuch1234567890123"/ },
    { name: "password in --shadow-url", args: ["migration:check", "--shadow-url", `postgres://u:${password}@127.0.0.1/x`], exit: 2, line: /^error: --shadow-url must not carry a password/ },
    { name: "missing --env file", args: ["migration:run", "--env", "nosuch"], exit: 2, line: /^error: --env nosuch: \.env\.nosuch not found/ },
    { name: "pending migration that does not compile", args: ["migration:run"], dir: () => withFile("1795600000100-Broken.ts", `import { MigrationInterface } from "typeorm";\nexport class Broken1795600000100 implements MigrationInterface {\n  async up(q: any) { await q.query("SELECT 1"; }\n  async down() {}\n}\n`), exit: 1, line: /^error: apidb: .*apidb\/1795600000100-Broken\.ts:3:46: '\)' expected\.$/ },
    { name: "migration file without a migration class", args: ["migration:run"], dir: () => withFile("1795600000101-NoClass.ts", `export class NoClass1795600000101 {}\n`), exit: 1, line: /^error: apidb: .*apidb\/1795600000101-NoClass\.ts exports no migration class/ },
    { name: "two files with one migration name", args: ["migration:run"], dir: () => { const d = withFile("1795600000102-Twice.ts", good("Twice1795600000102")); fs.writeFileSync(path.join(d, "apidb", "1795600000102-Twice-copy.ts"), good("Twice1795600000102")); return d; }, exit: 1, line: /^error: apidb: 1795600000102-Twice(-copy)?\.ts and .* both declare migration Twice1795600000102$/ },
    { name: "migration name without a timestamp", args: ["migration:run"], dir: () => withFile("NoStamp.ts", good("NoStamp")), exit: 1, line: /^error: apidb: migration NoStamp in NoStamp\.ts has no 13-digit timestamp/ },
    { name: "extension the server lacks", args: ["migration:run"], dir: () => withFile("1795600000103-Geo.ts", good("Geo1795600000103").replace(`"SELECT 1"`, `'CREATE EXTENSION IF NOT EXISTS "no_such_extension"'`)), exit: 1, line: /^error: apidb: extension "no_such_extension" needed by the pending migrations is not available/ },
    { name: "unknown backup", args: ["db:restore", "no-such-run"], exit: 2, line: /^error: no backup "no-such-run"/ },
  ];

  it.each(cases)("$name", async (c) => {
    const dir = c.dir?.();
    const env: Record<string, string> = { ...fresh.env, ...(dir ? { MIGRATIONS_DIR: dir } : {}), ...c.env };
    for (const [k, v] of Object.entries(env)) if (v === "") delete env[k];
    const r = await runCli(c.args, env);
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
    expect(r.code).toBe(c.exit);
    const lines = r.stderr.trim().split("\n");
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(c.line);
    expect(r.stderr).not.toMatch(/\bat .+:\d+:\d+\)?$/m);
    expect(r.stdout + r.stderr).not.toContain(password);
    // Nothing changed: no database, no backup directory.
    const existing = await query<{ datname: string }>(serverUrl(), `SELECT datname FROM pg_database WHERE datname = ANY($1)`, [Object.values(fresh.names)]);
    expect(existing).toEqual([]);
    expect(fs.existsSync(fresh.env.MIGRATION_BACKUP_DIR)).toBe(false);
  });

  afterAll(() => {
    figures.push(`bad input: ${cases.length} classes (plus --steps beyond what is applied), each one line, the right exit code, no stack trace, no password, nothing created`);
  });

  describe("on a migrated database", () => {
    const dbs = testDatabases("badmigrated");
    beforeAll(async () => {
      expect((await runCli(["migration:run"], dbs.env)).code).toBe(0);
    });
    afterAll(() => dbs.drop());

    it("--steps beyond what is applied is refused, saying how many are; a broken pending file changes nothing", async () => {
      const before = await withClient(dbs.names.apidb, async (c) => (await readHistory(c)).length);
      fs.rmSync(dbs.env.MIGRATION_BACKUP_DIR, { recursive: true, force: true });
      const r = await runCli(["migration:revert", "--db", "apidb", "--steps", "99"], dbs.env);
      expect(r.code).toBe(2);
      expect(r.stderr.trim()).toBe("error: apidb: --steps 99: only 1 migration is applied");
      const dir = withFile("1795600000100-Broken.ts", `export class Broken1795600000100 {\n  async up(q: any) { await q.query("SELECT 1"; }\n}\n`);
      try {
        const r2 = await runCli(["migration:run"], { ...dbs.env, MIGRATIONS_DIR: dir });
        expect(r2.code).toBe(1);
        expect(r2.stderr.trim()).toMatch(/^error: apidb: .*1795600000100-Broken\.ts:2:46: '\)' expected\.$/);
      } finally {
        fs.rmSync(dir, { recursive: true, force: true });
      }
      expect(await withClient(dbs.names.apidb, async (c) => (await readHistory(c)).length)).toBe(before);
      expect(fs.existsSync(dbs.env.MIGRATION_BACKUP_DIR)).toBe(false);
    });
  });
});

describe("through PgBouncer in transaction mode", () => {
  let bouncer: Awaited<ReturnType<typeof startPgBouncer>>;
  beforeAll(async () => {
    bouncer = await startPgBouncer(serverUrl(), { poolMode: "transaction" });
  });
  afterAll(() => bouncer?.stop());

  const pooledEnv = (label: string) => {
    const dbs = testDatabases(label);
    const env: Record<string, string> = { ...dbs.env };
    for (const db of DATABASES) env[`${db.toUpperCase()}_URL`] = bouncer.url(dbs.names[db]);
    return { dbs, env };
  };

  it("four runs at once without a direct URL: all refused before any change, naming the pooler; no session state left in the pool", async () => {
    const { dbs, env } = pooledEnv("pooled");
    try {
      const runs = await Promise.all([1, 2, 3, 4].map(() => runCli(["migration:run"], env)));
      for (const r of runs) {
        expect(r.code).toBe(1);
        expect(r.stderr.trim()).toBe(`error: authdb: 127.0.0.1:${bouncer.port} is a connection pooler (PgBouncer or alike), where locks and session settings do not hold: give the server itself in AUTHDB_DIRECT_URL (the applications keep AUTHDB_URL)`);
      }
      const existing = await query(serverUrl(), `SELECT datname FROM pg_database WHERE datname = ANY($1)`, [Object.values(dbs.names)]);
      expect(existing).toEqual([]);
      // Every pooled server connection still has the defaults an application expects.
      const clients = await Promise.all(Array.from({ length: 6 }, async () => {
        const c = new Client({ connectionString: bouncer.url("postgres") });
        c.on("error", () => undefined);
        await c.connect();
        await c.query("BEGIN");
        return c;
      }));
      for (const c of clients) {
        const { rows } = await c.query(`SELECT current_setting('search_path') AS sp, current_setting('application_name') AS app, current_setting('lock_timeout') AS lt,
          (SELECT count(*)::int FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()) AS locks`);
        expect(rows[0]).toEqual({ sp: '"$user", public', app: "", lt: "0", locks: 0 });
      }
      await Promise.all(clients.map(async (c) => { await c.query("ROLLBACK"); await c.end(); }));
      figures.push(`PgBouncer (transaction mode), 4 runs at once without a direct URL: 4/4 refused with one line naming the pooler and AUTHDB_DIRECT_URL, no database created, 6/6 pooled server connections with default settings and no lock`);
    } finally {
      await dbs.drop();
    }
  });

  it("with *_DIRECT_URL given, four runs at once all exit 0 and apply each migration once", async () => {
    const { dbs, env } = pooledEnv("direct");
    try {
      for (const db of DATABASES) env[`${db.toUpperCase()}_DIRECT_URL`] = dbs.env[`${db.toUpperCase()}_URL`];
      const runs = await Promise.all([1, 2, 3, 4].map(() => runCli(["migration:run", "--json"], env)));
      const { applied, idle, statuses } = outcome(runs);
      expect(statuses.filter((s) => s !== "applied" && s !== "nothing-to-do")).toEqual([]);
      expect(applied).toBe(1);
      expect(idle).toBe(3);
      await expectAppliedOnce(serverUrl(), dbs.names);
      figures.push(`PgBouncer with AUTHDB/APIDB/ADMINDB_DIRECT_URL, 4 runs at once: 4/4 exit 0 (1 applied, 3 nothing to do), each migration applied once`);
    } finally {
      await dbs.drop();
    }
  });

  it.each(["statement", "session"] as const)("%s pooling is refused too", async (poolMode) => {
    const statement = await startPgBouncer(serverUrl(), { poolMode });
    const dbs = testDatabases("stmtpool");
    try {
      const env: Record<string, string> = { ...dbs.env, AUTHDB_URL: statement.url(dbs.names.authdb) };
      const r = await runCli(["migration:run"], env);
      expect(r.code).toBe(1);
      expect(r.stderr.trim()).toMatch(/^error: authdb: 127\.0\.0\.1:\d+ is a connection pooler/);
    } finally {
      await statement.stop();
      await dbs.drop();
    }
  });
});

describe("a URL that points at a hot standby", () => {
  it("is refused naming the database, before anything changes anywhere", async () => {
    const pair = await startPrimaryWithStandby();
    try {
      const { env, names } = envFor(pair.primaryUrl, "standby");
      env.APIDB_URL = withDb(pair.standbyUrl, names.apidb);
      const r = await runCli(["migration:run"], env);
      expect(r.code).toBe(1);
      expect(r.stderr.trim()).toMatch(/^error: apidb: 127\.0\.0\.1:\d+ is a read-only standby \(in recovery\): point APIDB_URL at the primary$/);
      const existing = await query(pair.primaryUrl, `SELECT datname FROM pg_database WHERE datname = ANY($1)`, [Object.values(names)]);
      expect(existing).toEqual([]);
      expect(fs.existsSync(env.MIGRATION_BACKUP_DIR)).toBe(false);
      figures.push(`hot standby (pg_basebackup -R) as APIDB_URL: refused with one line naming apidb, nothing created on the primary`);
    } finally {
      await pair.stop();
    }
  });
});
