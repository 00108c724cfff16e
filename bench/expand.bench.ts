// Zero-downtime changes under a rolling deploy: apidb.profiles with BENCH_EXPAND_ROWS rows (default 2,000,000),
// an "old service" writing the old column and, once the first phase is deployed, a "new service"
// writing the new one (each 200 writes/s, UPDATE by primary key at fixed scheduled times like
// pgbench -R; every write's latency from its scheduled start and every error logged per transaction).
//   rename   profiles.phone -> phone_number: ours (migration:run = expand with trigger and backfill;
//            the old service rolled out; migration:complete = contract) vs TypeORM's generate without
//            a rename (DROP COLUMN + ADD COLUMN: values lost) vs a plain RENAME COLUMN (old service errors);
//   type     profiles.address text -> varchar(40): ours vs an in-place ALTER COLUMN ... TYPE (rewrite).
// Each deploy on a fresh copy of the same seeded database (CREATE DATABASE ... TEMPLATE).
// Per tool: errors per service, values lost (rows whose new column is not the last value written,
// or the seeded one), longest write during the deploy (all its phases), backfill rows/s (ours).
// Targets: 0 errors, 0 values lost, longest write <= 150 ms, backfill >= 50k rows/s.
import { spawn } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { performance } from "perf_hooks";
import { Client } from "pg";
import { MIGRATIONS_ROOT } from "../src/config";
import { renderEvolveMigrations } from "../src/evolve";
import type { EvolveChange } from "../src/evolve";
import type { TestServer } from "../test/support/server";
import { CLI, envFor, ROOT, runBench, sql, timed, uniqueNames, urlFor } from "./support";

/** Rows in profiles (BENCH_EXPAND_ROWS; at least 1000). */
const ROWS = Number(process.env.BENCH_EXPAND_ROWS ?? 2000000);
if (!Number.isInteger(ROWS) || ROWS < 1000) {
  process.stderr.write("error: BENCH_EXPAND_ROWS must be a whole number of rows, at least 1000\n");
  process.exit(2);
}
const RATE = 200;
const TARGET_MS = 150;
const TARGET_ROWS_S = 50_000;
const now = () => (performance.timeOrigin + performance.now()) / 1000;
const sleep = (s: number) => new Promise((r) => setTimeout(r, s * 1000));

interface Write { start: number; end: number; ms: number; error?: string }

/**
 * A service: UPDATE of a random row's column at RATE writes/s on fixed scheduled times; latency from
 * the schedule. The old service writes odd rows, the new one even rows: each row's last value is known.
 */
function service(url: string, column: string, tag: string, parity: 0 | 1) {
  const client = new Client({ connectionString: url, application_name: `bench-${tag}` });
  client.on("error", () => undefined);
  const log: Write[] = [];
  const written = new Map<number, string>();
  let col = column;
  let running = true;
  const done = (async () => {
    await client.connect();
    const t0 = now();
    for (let i = 0; running; i++) {
      const scheduled = t0 + i / RATE;
      const wait = scheduled - now();
      if (wait > 0) await sleep(wait);
      const g = parity + 2 * (1 + Math.floor(Math.random() * Math.floor((ROWS - 1) / 2)));
      const value = `${tag}${i}`;
      try {
        await client.query(`UPDATE profiles SET "${col}" = $1 WHERE id = md5($2::text)::uuid`, [value, g]);
        written.set(g, value);
        log.push({ start: scheduled, end: now(), ms: (now() - scheduled) * 1000 });
      } catch (error) {
        log.push({ start: scheduled, end: now(), ms: (now() - scheduled) * 1000, error: (error as Error).message });
      }
    }
    await client.end();
  })();
  return { log, written, writeAs: (c: string) => (col = c), stop: async () => { running = false; await done; } };
}

function runCli(args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { env, cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}

async function query<T>(url: string, text: string, params: unknown[] = []): Promise<T[]> {
  const c = new Client({ connectionString: url });
  await c.connect();
  try {
    return (await c.query(text, params)).rows as T[];
  } finally {
    await c.end();
  }
}

type Scenario = "rename" | "type";
type Tool = "ours" | "drop-add" | "rename-column" | "alter-type";
const TOOL_NAMES: Record<Tool, string> = {
  ours: "ours (run -> complete)", "drop-add": "TypeORM generate (DROP + ADD)", "rename-column": "RENAME COLUMN", "alter-type": "ALTER COLUMN TYPE in place",
};
const CHANGES: Record<Scenario, EvolveChange> = {
  rename: { kind: "rename-column", table: "profiles", from: "phone", to: "phone_number", type: "text", notNull: false },
  type: { kind: "change-type", table: "profiles", column: "address", fromType: "text", toType: "character varying(40)", notNull: false },
};
const BASELINE_SQL: Partial<Record<Tool, string>> = {
  "drop-add": `ALTER TABLE "profiles" DROP COLUMN "phone"; ALTER TABLE "profiles" ADD "phone_number" text`,
  "rename-column": `ALTER TABLE "profiles" RENAME COLUMN "phone" TO "phone_number"`,
  "alter-type": `ALTER TABLE "profiles" ALTER COLUMN "address" TYPE character varying(40)`,
};

interface Result {
  scenario: Scenario;
  tool: Tool;
  errorsOld: number;
  errorsNew: number;
  firstError?: string;
  lost: number;
  longestMs: number;
  writesDuring: number;
  /** The longest write in the 2 s before the deploy: the machine's own noise. */
  longestBeforeMs: number;
  deployS: number;
  backfillRowsS?: number;
}

async function deploy(server: TestServer, base: string, template: Record<string, string>, scenario: Scenario, tool: Tool, work: string): Promise<Result> {
  const apidb = `${template.apidb}_${scenario}_${tool.replace(/-/g, "_")}`;
  const url = urlFor(server, apidb);
  await sql(server, "postgres", `CREATE DATABASE "${apidb}" TEMPLATE "${template.apidb}" STRATEGY FILE_COPY`);
  const dir = fs.mkdtempSync(path.join(work, `${scenario}-${tool}-`));
  const migrations = path.join(dir, "migrations");
  fs.cpSync(base, migrations, { recursive: true });
  const name = scenario === "rename" ? "RenamePhone" : "NarrowAddress";
  for (const f of renderEvolveMigrations(name, 1796000000000, [CHANGES[scenario]])) fs.writeFileSync(path.join(migrations, "apidb", `${f.timestamp}-${name}.ts`), f.text);
  const env = envFor(server, { ...template, apidb } as never, { MIGRATIONS_DIR: migrations, MIGRATION_BACKUP_DIR: path.join(dir, "backups"), MIGRATION_CONTRACT_IDLE: "1s" });
  const [oldCol, newCol] = scenario === "rename" ? ["phone", "phone_number"] : ["address", "address"];
  const windows: Array<[number, number]> = [];
  const window = async <T>(body: () => Promise<T>): Promise<T> => {
    const t0 = now();
    try {
      return await body();
    } finally {
      windows.push([t0, now()]);
    }
  };
  let backfillRowsS: number | undefined;
  const oldService = service(url, oldCol, "o", 1);
  const services = [oldService];
  try {
    await sleep(2);
    if (tool === "ours") {
      const run = await window(() => runCli(["migration:run", "--db", "apidb", "--no-backup"], env));
      if (run.code !== 0) throw new Error(`migration:run failed: ${run.stderr.trim().split("\n").pop()}`);
      backfillRowsS = Number(/backfill profiles: done, .* (\d+) rows\/s/.exec(run.stderr)?.[1] ?? NaN);
    } else {
      await window(() => query(url, `BEGIN; SET lock_timeout = 0; ${BASELINE_SQL[tool]}; COMMIT`));
    }
    // The rolling deploy: the new version starts; then the old one is gone.
    const newService = service(url, newCol, "n", 0);
    services.push(newService);
    await sleep(2);
    await oldService.stop();
    if (tool === "ours") {
      await sleep(1.5); // longer than MIGRATION_CONTRACT_IDLE (1s) since the old service's last write
      const complete = await window(() => runCli(["migration:complete", "--db", "apidb", "--no-backup"], env));
      if (complete.code !== 0) throw new Error(`migration:complete failed: ${complete.stderr.trim().split("\n").pop()}`);
    }
    await sleep(2);
    await newService.stop();
  } finally {
    for (const s of services) await s.stop().catch(() => undefined);
  }
  // Values lost: rows whose final column is not the last value written to it (or the seeded one).
  const finalCol = scenario === "rename" ? "phone_number" : "address";
  const seeded = scenario === "rename" ? `'p' || bench_g` : `'street ' || bench_g`;
  const c = new Client({ connectionString: url });
  await c.connect();
  let lost: number;
  try {
    // Each row is written by one service only (odd/even), in order: its last value is known.
    const order = [...oldService.written.entries(), ...(services[1]?.written.entries() ?? [])];
    const last = new Map<number, string>(order);
    await c.query(`CREATE TEMP TABLE expected (g int PRIMARY KEY, v text)`);
    await c.query(`INSERT INTO expected SELECT * FROM unnest($1::int[], $2::text[])`, [[...last.keys()], [...last.values()]]);
    const cols = (await c.query(`SELECT 1 FROM information_schema.columns WHERE table_name = 'profiles' AND column_name = $1`, [finalCol])).rowCount;
    lost = cols
      ? Number((await c.query(`SELECT count(*) AS n FROM profiles p LEFT JOIN expected e ON e.g = p.bench_g WHERE p."${finalCol}" IS DISTINCT FROM coalesce(e.v, ${seeded})`)).rows[0].n)
      : ROWS;
  } finally {
    await c.end();
  }
  const all = services.flatMap((s) => s.log);
  const during = all.filter((w) => windows.some(([a, b]) => w.start < b && w.end > a));
  const errors = (s: { log: Write[] }) => s.log.filter((w) => w.error);
  const firstError = [...errors(oldService), ...(services[1] ? errors(services[1]) : [])][0]?.error;
  await sql(server, "postgres", `DROP DATABASE IF EXISTS "${apidb}" WITH (FORCE)`);
  fs.rmSync(dir, { recursive: true, force: true });
  return {
    scenario, tool, errorsOld: errors(oldService).length, errorsNew: services[1] ? errors(services[1]).length : 0, firstError, lost,
    longestMs: Math.max(0, ...during.map((w) => w.ms)), writesDuring: during.length,
    longestBeforeMs: Math.max(0, ...oldService.log.filter((w) => w.end < windows[0][0] && w.start > oldService.log[0].start + 0.5).map((w) => w.ms)),
    deployS: windows.reduce((n, [a, b]) => n + (b - a), 0), backfillRowsS,
  };
}

function printTable(title: string, results: Result[]): void {
  const header = ["tool", "errors old svc", "errors new svc", "values lost", "longest write during deploy", "writes during", "longest write before", "deploy", "backfill"];
  const cells = results.map((r) => [TOOL_NAMES[r.tool], String(r.errorsOld), String(r.errorsNew), String(r.lost), `${r.longestMs.toFixed(1)} ms`, String(r.writesDuring), `${r.longestBeforeMs.toFixed(1)} ms`, `${r.deployS.toFixed(2)} s`, r.backfillRowsS ? `${r.backfillRowsS} rows/s` : "-"]);
  const widths = header.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i].length)));
  console.log(title);
  console.log("  " + header.map((h, i) => h.padEnd(widths[i])).join("  "));
  for (const c of cells) console.log("  " + c.map((v, i) => v.padEnd(widths[i])).join("  "));
  for (const r of results) if (r.firstError) console.log(`  ${TOOL_NAMES[r.tool]}: first error: ${r.firstError}`);
}

runBench(async (server) => {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), "aimig-bench-expand-"));
  const template = uniqueNames("expand");
  try {
    const base = path.join(work, "base");
    fs.cpSync(MIGRATIONS_ROOT, base, { recursive: true });
    timed(process.execPath, [CLI, "migration:run", "--no-backup"], envFor(server, template, { MIGRATIONS_DIR: base }));
    const seeded = now();
    // bench_g: which row pgbench-style writers address (id = md5(g)), and what its seeded values were.
    await sql(server, template.apidb, `ALTER TABLE profiles ADD COLUMN bench_g int;
      INSERT INTO profiles (id, user_id, name, phone, address, bench_g)
        SELECT md5(g::text)::uuid, md5('u' || g)::uuid, 'name ' || g, 'p' || g, 'street ' || g, g FROM generate_series(1, ${ROWS}) g`);
    await sql(server, template.apidb, `VACUUM ANALYZE profiles`);
    console.log(`seeded ${ROWS} profiles in ${(now() - seeded).toFixed(1)} s; old and new service ${RATE} writes/s each (UPDATE by primary key); machine shared with other jobs (load ${os.loadavg()[0].toFixed(1)})`);
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    require("../bin/build").ensureBuilt();
    const results: Result[] = [];
    for (const tool of ["ours", "drop-add", "rename-column"] as Tool[]) results.push(await deploy(server, base, template, "rename", tool, work));
    for (const tool of ["ours", "alter-type"] as Tool[]) results.push(await deploy(server, base, template, "type", tool, work));
    console.log("");
    printTable(`rename profiles.phone -> phone_number, ${ROWS} rows`, results.filter((r) => r.scenario === "rename"));
    console.log("");
    printTable(`profiles.address text -> varchar(40), ${ROWS} rows`, results.filter((r) => r.scenario === "type"));
    console.log("");
    for (const r of results.filter((x) => x.tool === "ours")) {
      const met = r.errorsOld + r.errorsNew === 0 && r.lost === 0 && r.longestMs <= TARGET_MS && (r.backfillRowsS ?? 0) >= TARGET_ROWS_S;
      console.log(`${r.scenario}, ours: ${r.errorsOld + r.errorsNew} errors, ${r.lost} values lost, longest write ${r.longestMs.toFixed(1)} ms, backfill ${r.backfillRowsS} rows/s (targets 0, 0, <= ${TARGET_MS} ms, >= ${TARGET_ROWS_S} rows/s: ${met ? "met" : "MISSED"})`);
    }
  } finally {
    for (const db of Object.values(template)) await sql(server, "postgres", `DROP DATABASE IF EXISTS "${db}" WITH (FORCE)`).catch(() => undefined);
    fs.rmSync(work, { recursive: true, force: true });
  }
}, { ownServer: true });
