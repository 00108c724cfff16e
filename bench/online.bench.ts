// Online deploys: how long the services' writes stall while a migration runs on a busy table.
// admindb.documents holds 2,000,000 rows; 4 pgbench clients write to it (UPDATE by primary key 4 in
// 5, INSERT 1 in 5) at a steady total rate (-R), logging every transaction (-l). Two scenarios,
// each deployed once by our `migration:run` and once by the plain TypeORM CLI (the baseline), each
// on a fresh copy (CREATE DATABASE ... TEMPLATE) of the same seeded admindb, with the shipped
// migrations plus the scenario's in a private MIGRATIONS_DIR:
//   index        an @Index on Document.mimeType, applied to the entity in this process only. Ours:
//                the file our generate writes (generateMigrations itself, src/commands/generate.ts:
//                a `transaction = false` migration with CREATE INDEX CONCURRENTLY); the baseline:
//                TypeORM's own diff of the same entities, in the file its CLI writes (a plain
//                CREATE INDEX, in a transaction).
//   long reader  ALTER TABLE documents ADD COLUMN reviewed_at timestamp (the same file for both),
//                deployed while a report query holds ACCESS SHARE on documents for 12 s.
// Measured from the pgbench logs: the longest write and the 99th percentile of the writes that
// overlap the deploy (the command's wall clock, process start to exit), and the longest write in
// the seconds before it (the noise). With -R a write's latency counts from its scheduled start, so
// writes queued behind a lock count in full. Ours runs with --no-backup: the TypeORM CLI takes no
// backup either, and a pg_dump of 2M rows would outlast the reader.
// Targets: longest write during the deploy <= 150 ms (index), <= 200 ms (long reader), and our
// deploy succeeds once the reader is gone. A missed target prints MISSED; only a setup failure
// exits non-zero. BENCH_DOCUMENTS, BENCH_WRITE_RATE (0: as fast as pgbench goes) and
// MIGRATION_LOCK_TIMEOUT / MIGRATION_LOCK_RETRY_BUDGET (passed to ours when set) change the run.
import { ChildProcess, spawn } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { performance } from "perf_hooks";
import { Client } from "pg";
import { DataSource, DefaultNamingStrategy, Index } from "typeorm";
import { loadConfig, MIGRATIONS_ROOT } from "../src/config";
import { DATABASES, DbName } from "../src/databases";
import { Document } from "../src/entities/admindb";
import { generateMigrations } from "../src/commands/generate";
import { dataSourceOptions } from "../src/postgres/data-source";
import { schemaDiff } from "../src/schema/diff";
import { renderMigration } from "../src/schema/render-migration";
import type { TestServer } from "../test/support/server";
import { CLI, envFor, libpqEnv, ROOT, runBench, sql, timed, uniqueNames, urlFor } from "./support";

const DOCUMENTS = Number(process.env.BENCH_DOCUMENTS ?? 2_000_000);
const WRITERS = 4;
/** Writes per second over all writers (pgbench -R): a steady service load that leaves CPU for the deploy. */
const WRITE_RATE = Number(process.env.BENCH_WRITE_RATE ?? 400);
/** Writes before the deploy (the noise), and after it (so every write it held up has finished). */
const BEFORE_S = Number(process.env.BENCH_BEFORE_S ?? 4);
const AFTER_S = 2;
/** The first writes of a pgbench run (connections warming up) count nowhere. */
const SETTLE_S = 1;
const READER_S = 12;
const TARGETS_MS = { index: 150, reader: 200 } as const;
const PGBENCH = process.env.PGBENCH ?? "/usr/lib/postgresql/15/bin/pgbench";
const KB_ID = "00000000-0000-4000-8000-000000000001";
const WRITERS_APP = "bench-writers";
const READER_APP = "bench-reader";
// Passed to our tool only when set here: by default it runs with its own defaults.
const PASS_THROUGH = ["MIGRATION_LOCK_TIMEOUT", "MIGRATION_LOCK_RETRY_BUDGET", "MIGRATION_STATEMENT_TIMEOUT"];

type Scenario = "index" | "reader";
type Tool = "ours" | "typeorm";
const TOOL_NAMES: Record<Tool, string> = { ours: "ours", typeorm: "TypeORM CLI" };

interface MigrationText {
  /** File name in the migrations folder of admindb. */
  file: string;
  text: string;
  /** Its up statements, to show. */
  up: string[];
}

interface Write {
  client: number;
  /** Epoch seconds. */
  start: number;
  end: number;
  latencyMs: number;
}

interface Measured {
  tool: Tool;
  ok: boolean;
  /** The last line of the command's error output when it failed. */
  error?: string;
  deployS: number;
  duringMaxMs: number;
  duringP99Ms: number;
  duringCount: number;
  beforeMaxMs: number;
  beforeCount: number;
  /** Reader scenario: the deploy ended this long after the reader committed (negative: before). */
  afterReaderS?: number;
  /** Ours: the lock retries it printed (`lock not available ...; rolled back, try N in ...`). */
  lockRetries: number;
}

const now = () => (performance.timeOrigin + performance.now()) / 1000;
const sleep = (s: number) => new Promise((r) => setTimeout(r, s * 1000));
const ms = (v: number) => `${v.toFixed(1)} ms`;

function percentile(values: number[], p: number): number {
  if (!values.length) return NaN;
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)];
}

/** pgbench per-transaction log lines: `client_id tx_no latency_us script_no epoch_s epoch_us [lag_us]`. */
function readWrites(dir: string): Write[] {
  const writes: Write[] = [];
  for (const f of fs.readdirSync(dir).filter((n) => n.startsWith("writes."))) {
    for (const line of fs.readFileSync(path.join(dir, f), "utf8").split("\n")) {
      const p = line.trim().split(/\s+/);
      if (p.length < 6) continue;
      const latency = Number(p[2]) / 1e6; // with -R: from the scheduled start, so queueing behind a lock counts
      const end = Number(p[4]) + Number(p[5]) / 1e6;
      if (!Number.isFinite(latency) || !Number.isFinite(end)) throw new Error(`pgbench log ${f}: unreadable line "${line}"`);
      writes.push({ client: Number(p[0]), start: end - latency, end, latencyMs: latency * 1000 });
    }
  }
  return writes;
}

function stoppedOnItsOwn(r: { code: number | null; stderr: string }): Error {
  return new Error(`pgbench stopped on its own (exit ${r.code}): ${r.stderr.trim().split("\n").slice(-3).join(" | ")}`);
}

interface Running {
  child: ChildProcess;
  done: Promise<{ code: number | null; stdout: string; stderr: string }>;
}

function start(cmd: string, args: string[], env: NodeJS.ProcessEnv, cwd = ROOT): Running {
  const child = spawn(cmd, args, { env, cwd, stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout!.on("data", (d) => (stdout += d));
  child.stderr!.on("data", (d) => (stderr += d));
  const done = new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve, reject) => {
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout, stderr }));
  });
  return { child, done };
}

async function withClient<T>(url: string, body: (c: Client) => Promise<T>): Promise<T> {
  const c = new Client({ connectionString: url });
  await c.connect();
  try {
    return await body(c);
  } finally {
    await c.end();
  }
}

/** The writers: UPDATE one document by primary key (4 in 5), INSERT one (1 in 5). */
function writeScripts(dir: string): string[] {
  const update = path.join(dir, "update.sql");
  const insert = path.join(dir, "insert.sql");
  fs.writeFileSync(update, `\\set id random(1, ${DOCUMENTS})\nUPDATE documents SET file_size = file_size + 1 WHERE id = md5(:id::text)::uuid;\n`);
  fs.writeFileSync(insert, `\\set n random(1, 1000000000)
INSERT INTO documents (knowledge_base_id, filename, original_filename, file_path, mime_type, file_size, text_content) VALUES ('${KB_ID}', 'upload' || :n || '.pdf', 'Upload ' || :n || '.pdf', '/data/uploads/' || :n, 'application/pdf', :n, 'Uploaded text ' || :n);\n`);
  return ["-f", `${update}@4`, "-f", `${insert}@1`];
}

const MIME_TYPES = ["application/pdf", "text/plain", "text/markdown", "text/html", "application/vnd.openxmlformats-officedocument.wordprocessingml.document"];

/** The rows the services would have: one knowledge base, DOCUMENTS documents with short text. Ids md5(g), so pgbench can address row g. */
async function seed(server: TestServer, database: string): Promise<void> {
  await withClient(urlFor(server, database), async (c) => {
    await c.query(`INSERT INTO knowledge_bases (id, name, user_id) VALUES ('${KB_ID}', 'Product manuals', uuid_generate_v4())`);
    const mime = `(ARRAY[${MIME_TYPES.map((m) => `'${m}'`).join(", ")}])[1 + (g % ${MIME_TYPES.length})]`;
    await c.query(`INSERT INTO documents (id, knowledge_base_id, filename, original_filename, file_path, mime_type, file_size, status, text_content, tags, created_at, updated_at)
      SELECT md5(g::text)::uuid, '${KB_ID}', 'doc' || g || '.pdf', 'Document ' || g || '.pdf', '/data/kb/' || g || '.pdf', ${mime},
             (random() * 10000000)::bigint, CASE WHEN g % 10 = 0 THEN 'processing' ELSE 'processed' END,
             'Section ' || g || ': how to reset the device and restore its settings.', ARRAY['manual', 'tag' || (g % 20)],
             now() - (g || ' seconds')::interval, now()
        FROM generate_series(1, ${DOCUMENTS}) g`);
    await c.query(`VACUUM ANALYZE`);
  });
}

/** The migration files of scenario `index`: what our generate writes and what TypeORM's generate writes. */
async function indexMigrations(server: TestServer, names: Record<DbName, string>, base: string, timestamp: number): Promise<Record<Tool, MigrationText>> {
  // The entity change itself, made in this process only: @Index(["mimeType"]) on Document.
  Index(["mimeType"])(Document);
  const scratch = fs.mkdtempSync(path.join(os.tmpdir(), "aimig-bench-generate-"));
  fs.cpSync(base, scratch, { recursive: true });
  try {
    const config = loadConfig({ ...envFor(server, names), MIGRATIONS_DIR: scratch });
    const report = await generateMigrations(config, { name: "AddDocumentMimeTypeIndex", dbs: ["admindb"], timestamp });
    const [db] = report.databases;
    if (db.migrations.length !== 1 || db.migrations[0].transaction || !db.migrations[0].up.some((q) => /CREATE INDEX CONCURRENTLY/.test(q))) {
      throw new Error(`migration:generate wrote an unexpected plan for the index: ${JSON.stringify(db.migrations)}`);
    }
    const oursFile = path.resolve(db.migrations[0].file!);
    // TypeORM's own diff of the same entities against the same database, in the file its CLI writes.
    const source = new DataSource(dataSourceOptions("admindb", urlFor(server, names.admindb)));
    await source.initialize();
    let diff: Awaited<ReturnType<typeof schemaDiff>>;
    try {
      diff = await schemaDiff(source);
    } finally {
      await source.destroy();
    }
    const expected = new DefaultNamingStrategy().indexName("documents", ["mime_type"]);
    if (diff.up.length !== 1 || !diff.up[0].query.startsWith(`CREATE INDEX "${expected}" ON "documents"`)) {
      throw new Error(`TypeORM's diff is not the one index: ${JSON.stringify(diff.up)}`);
    }
    const name = `AddDocumentMimeTypeIndex${timestamp}`;
    return {
      ours: { file: path.basename(oursFile), text: fs.readFileSync(oursFile, "utf8"), up: db.migrations[0].up },
      typeorm: { file: `${timestamp}-AddDocumentMimeTypeIndex.ts`, text: renderMigration(name, diff.up, diff.down), up: diff.up.map((q) => q.query) },
    };
  } finally {
    fs.rmSync(scratch, { recursive: true, force: true });
  }
}

function readerMigration(timestamp: number): MigrationText {
  const name = `AddDocumentReviewedAt${timestamp}`;
  const up = `ALTER TABLE documents ADD COLUMN reviewed_at timestamp`;
  return {
    file: `${timestamp}-AddDocumentReviewedAt.ts`,
    text: renderMigration(name, [{ query: up }], [{ query: `ALTER TABLE documents DROP COLUMN reviewed_at` }]),
    up: [up],
  };
}

/** Whether the change is in the database, complete (a valid index; the column) and recorded. */
async function changeApplied(server: TestServer, database: string, scenario: Scenario, migration: string): Promise<boolean> {
  return withClient(urlFor(server, database), async (c) => {
    const recorded = (await c.query(`SELECT 1 FROM migrations WHERE name = $1`, [migration])).rowCount === 1;
    const present = scenario === "index"
      ? (await c.query(`SELECT 1 FROM pg_index i JOIN pg_class t ON t.oid = i.indrelid JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = i.indkey[0]
                         WHERE t.relname = 'documents' AND a.attname = 'mime_type' AND i.indnatts = 1 AND i.indisvalid`)).rowCount === 1
      : (await c.query(`SELECT 1 FROM information_schema.columns WHERE table_name = 'documents' AND column_name = 'reviewed_at'`)).rowCount === 1;
    return recorded && present;
  });
}

interface Setup {
  server: TestServer;
  template: Record<DbName, string>;
  base: string;
  work: string;
  files: Record<Scenario, Record<Tool, MigrationText>>;
}

/** One deploy of one scenario by one tool, on a fresh copy of the seeded admindb, under write load. */
async function deployUnderLoad(setup: Setup, scenario: Scenario, tool: Tool): Promise<Measured> {
  const { server, template } = setup;
  const admindb = `${template.admindb}_${scenario}_${tool}`;
  await sql(server, "postgres", `CREATE DATABASE "${admindb}" TEMPLATE "${template.admindb}" STRATEGY FILE_COPY`);
  const dir = fs.mkdtempSync(path.join(setup.work, `${scenario}-${tool}-`));
  const migrations = path.join(dir, "migrations");
  fs.cpSync(setup.base, migrations, { recursive: true });
  const migration = setup.files[scenario][tool];
  fs.writeFileSync(path.join(migrations, "admindb", migration.file), migration.text);
  const migrationName = /name = "(\w+)"/.exec(migration.text)![1];
  const env = envFor(server, { ...template, admindb }, { MIGRATIONS_DIR: migrations, MIGRATION_BACKUP_DIR: path.join(dir, "backups") });
  if (tool === "ours") for (const v of PASS_THROUGH) if (process.env[v]) env[v] = process.env[v];

  let writers: Running | undefined;
  let reader: Promise<number> | undefined;
  try {
    const logs = path.join(dir, "logs");
    fs.mkdirSync(logs);
    const pgbenchStart = now();
    writers = start(PGBENCH, [
      "-n", "-c", String(WRITERS), "-j", "1", "-T", "900", ...(WRITE_RATE > 0 ? ["-R", String(WRITE_RATE)] : []),
      "-l", "--log-prefix", path.join(logs, "writes"), ...writeScripts(dir),
    ], { ...libpqEnv(server, admindb), PGAPPNAME: WRITERS_APP });
    let exitedEarly = false;
    void writers.done.then(() => (exitedEarly = true));
    await sleep(BEFORE_S);
    if (exitedEarly) throw stoppedOnItsOwn(await writers.done);

    if (scenario === "reader") {
      // The report query: ACCESS SHARE on documents, held READER_S seconds, taken before the deploy.
      const readerClient = new Client({ connectionString: urlFor(server, admindb), application_name: READER_APP });
      await readerClient.connect();
      reader = readerClient
        .query(`BEGIN; SELECT count(*) FROM documents; SELECT pg_sleep(${READER_S}); COMMIT;`)
        .then(() => now())
        .finally(() => readerClient.end());
      reader.catch(() => undefined);
      const waitUntil = now() + 10;
      for (;;) {
        const r = await withClient(urlFor(server, admindb), (c) => c.query(`SELECT 1 FROM pg_stat_activity WHERE application_name = $1 AND wait_event = 'PgSleep'`, [READER_APP]));
        if (r.rowCount) break;
        if (now() > waitUntil) throw new Error("the reader never reached its pg_sleep");
        await sleep(0.05);
      }
    }

    const args = tool === "ours"
      ? [CLI, "migration:run", "--no-backup"]
      : [require.resolve("typeorm/cli-ts-node-commonjs"), "migration:run", "-d", "src/data-sources/admindb.ts"];
    // bin/migrate.js rebuilds dist/ when a source is newer: never inside the timed deploy.
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    require("../bin/build").ensureBuilt();
    const t0 = now();
    const result = await start(process.execPath, args, env).done;
    const t1 = now();
    if (process.env.BENCH_VERBOSE) console.log(`--- ${scenario} ${TOOL_NAMES[tool]}: exit ${result.code}, ${(t1 - t0).toFixed(2)} s\n${result.stdout}${result.stderr}---`);

    const readerEnd = reader ? await reader : undefined;
    await sleep(AFTER_S);
    if (exitedEarly) throw stoppedOnItsOwn(await writers.done);
    // pgbench has no clean stop: ending its sessions makes each client abort, and pgbench then exits
    // normally (exit 2), its logs flushed and closed. The writes cut short are after the window.
    const stoppedAt = now();
    await sql(server, "postgres", `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = '${WRITERS_APP}' AND datname = '${admindb}'`);
    const bench = await Promise.race([writers.done, sleep(15).then(() => undefined)]);
    if (!bench) throw new Error("pgbench did not stop after its sessions were ended");
    if (bench.code !== 0 && bench.code !== 2) throw new Error(`pgbench failed (exit ${bench.code}): ${bench.stderr.trim().split("\n").slice(-3).join(" | ")}`);
    writers = undefined;

    const writes = readWrites(logs);
    if (!writes.length) throw new Error("pgbench logged no transactions");
    // The log's clock must be the wall clock the deploy was timed with.
    const first = writes.reduce((m, w) => Math.min(m, w.end), Infinity);
    if (first < pgbenchStart - 1 || first > pgbenchStart + BEFORE_S) throw new Error(`pgbench log timestamps (${first}) are not on the wall clock (${pgbenchStart})`);
    // Every writer must have written after the deploy: one stuck through the window would hide its stall.
    for (let client = 0; client < WRITERS; client++) {
      const last = writes.reduce((m, w) => (w.client === client ? Math.max(m, w.end) : m), -Infinity);
      if (!(last > t1)) throw new Error(`writer ${client} logged nothing after the deploy (last write at ${(last - t0).toFixed(2)} s into it, stopped ${(stoppedAt - t0).toFixed(2)} s)`);
    }
    const during = writes.filter((w) => w.start < t1 && w.end > t0).map((w) => w.latencyMs);
    const before = writes.filter((w) => w.start >= pgbenchStart + SETTLE_S && w.end <= t0).map((w) => w.latencyMs);
    if (!during.length || !before.length) throw new Error(`too few writes measured (${before.length} before, ${during.length} during the deploy)`);

    const ok = result.code === 0 && (await changeApplied(server, admindb, scenario, migrationName));
    const error = result.code === 0 ? (ok ? undefined : "exit 0 but the change is not in the database") : (result.stderr.trim().split("\n").filter(Boolean).pop() ?? `exit ${result.code}`);
    return {
      tool, ok, error,
      deployS: t1 - t0,
      duringMaxMs: percentile(during, 100), duringP99Ms: percentile(during, 99), duringCount: during.length,
      beforeMaxMs: percentile(before, 100), beforeCount: before.length,
      afterReaderS: readerEnd === undefined ? undefined : t1 - readerEnd,
      lockRetries: (result.stderr.match(/rolled back, try \d+/g) ?? []).length,
    };
  } finally {
    if (writers) {
      writers.child.kill("SIGKILL");
      await writers.done.catch(() => undefined);
    }
    if (reader) await reader.catch(() => undefined);
    await sql(server, "postgres", `DROP DATABASE IF EXISTS "${admindb}" WITH (FORCE)`);
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

function printTable(title: string, rows: Measured[]): void {
  const header = ["tool", "outcome", "deploy", "longest write during", "p99 during", "writes during", "longest write before", "writes before"];
  const cells = rows.map((r) => [TOOL_NAMES[r.tool], r.ok ? "ok" : "failed", `${r.deployS.toFixed(2)} s`, ms(r.duringMaxMs), ms(r.duringP99Ms), String(r.duringCount), ms(r.beforeMaxMs), String(r.beforeCount)]);
  const widths = header.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i].length)));
  const line = (c: string[]) => "  " + c.map((v, i) => (i < 2 ? v.padEnd(widths[i]) : v.padStart(widths[i]))).join("  ");
  console.log(title);
  console.log(line(header));
  for (const c of cells) console.log(line(c));
  for (const r of rows) {
    if (r.error) console.log(`  ${TOOL_NAMES[r.tool]} failed: ${r.error.length > 300 ? `${r.error.slice(0, 300)}...` : r.error}`);
    if (r.lockRetries) console.log(`  ${TOOL_NAMES[r.tool]}: ${r.lockRetries} lock waits given up and retried`);
    if (r.afterReaderS !== undefined) console.log(`  ${TOOL_NAMES[r.tool]}: deploy ended ${Math.abs(r.afterReaderS).toFixed(2)} s ${r.afterReaderS >= 0 ? "after" : "before"} the reader committed`);
  }
}

/** One verdict line, in the style of support.ts `report`, against an absolute target in ms. */
function verdict(title: string, ours: number, baseline: number, targetMs: number): boolean {
  const met = ours <= targetMs;
  console.log(`${title}: ours ${ms(ours)}, TypeORM CLI ${ms(baseline)}, ratio ${(ours / baseline).toFixed(3)} (target <= ${targetMs} ms: ${met ? "met" : "MISSED"})`);
  return met;
}

runBench(async (server) => {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), "aimig-bench-online-"));
  const template = uniqueNames("online");
  try {
    // Both tools run on this cluster (fsync off, like the other benchmarks); autovacuum off, so
    // that no vacuum of documents lands in one measurement and not in the other.
    await sql(server, "postgres", `ALTER SYSTEM SET autovacuum = off`);
    await sql(server, "postgres", `SELECT pg_reload_conf()`);

    // The shipped state: a private copy of src/migrations, applied by our tool.
    const base = path.join(work, "base");
    fs.cpSync(MIGRATIONS_ROOT, base, { recursive: true });
    timed(process.execPath, [CLI, "migration:run", "--no-backup"], envFor(server, template, { MIGRATIONS_DIR: base }));
    const timestamp = 1 + Math.max(...DATABASES.flatMap((db) => fs.readdirSync(path.join(base, db)).map((f) => Number(/^(\d{13})-/.exec(f)?.[1] ?? 0))));

    const files: Setup["files"] = {
      index: await indexMigrations(server, template, base, timestamp),
      reader: { ours: readerMigration(timestamp), typeorm: readerMigration(timestamp) },
    };

    const seeded = now();
    await seed(server, template.admindb);
    console.log(`seeded ${DOCUMENTS} documents in ${(now() - seeded).toFixed(1)} s; ${WRITERS} writers at ${WRITE_RATE > 0 ? `${WRITE_RATE} writes/s` : "full speed"} (UPDATE by id 4:1 INSERT)`);
    const passed = PASS_THROUGH.filter((v) => process.env[v]).map((v) => `${v}=${process.env[v]}`);
    console.log(`ours: node bin/migrate.js migration:run --no-backup${passed.length ? ` with ${passed.join(" ")}` : " (its default lock_timeout and retries)"}; TypeORM CLI: typeorm-ts-node-commonjs migration:run -d src/data-sources/admindb.ts`);
    for (const tool of ["ours", "typeorm"] as Tool[]) {
      const f = files.index[tool];
      console.log(`index migration, ${TOOL_NAMES[tool]} (${/transaction = false/.test(f.text) ? "transaction = false" : "in a transaction"}): ${f.up.join("; ")}`);
    }
    const setup: Setup = { server, template, base, work, files };

    const results = {} as Record<Scenario, Measured[]>;
    for (const scenario of ["index", "reader"] as Scenario[]) {
      results[scenario] = [];
      for (const tool of ["ours", "typeorm"] as Tool[]) results[scenario].push(await deployUnderLoad(setup, scenario, tool));
    }

    console.log("");
    const [oi, ti] = results.index;
    printTable(`index: @Index on documents.mime_type, ${DOCUMENTS} rows (ours: CREATE INDEX CONCURRENTLY, transaction = false; TypeORM CLI: CREATE INDEX in a transaction)`, results.index);
    console.log("");
    const [or, tr] = results.reader;
    printTable(`long reader: ALTER TABLE documents ADD COLUMN reviewed_at timestamp while a ${READER_S} s report query holds ACCESS SHARE`, results.reader);
    console.log("");
    verdict("index, longest write during the deploy", oi.duringMaxMs, ti.duringMaxMs, TARGETS_MS.index);
    verdict("long reader, longest write during the deploy", or.duringMaxMs, tr.duringMaxMs, TARGETS_MS.reader);
    const succeeded = or.ok && (or.afterReaderS ?? -1) >= 0;
    console.log(`long reader, our deploy succeeds once the reader is gone: ${or.ok ? `ok, ${or.afterReaderS!.toFixed(2)} s after the reader committed` : `failed after ${or.deployS.toFixed(2)} s`} (target: succeeds: ${succeeded ? "met" : "MISSED"})`);
    console.log(`(for reference: index ours ${oi.ok ? "ok" : "failed"} in ${oi.deployS.toFixed(2)} s vs TypeORM CLI ${ti.deployS.toFixed(2)} s; long reader TypeORM CLI ${tr.ok ? "ok" : "failed"} in ${tr.deployS.toFixed(2)} s)`);
  } finally {
    for (const db of DATABASES) await sql(server, "postgres", `DROP DATABASE IF EXISTS "${template[db]}" WITH (FORCE)`).catch(() => undefined);
    fs.rmSync(work, { recursive: true, force: true });
  }
}, { ownServer: true });
