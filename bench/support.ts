// Shared by the benchmarks: a server of their own (same provider as the tests), unique databases,
// commands timed by wall clock, medians and ratios. Each benchmark measures its baseline in the
// same run, on the same server, interleaved with our command.
import { spawnSync } from "child_process";
import * as crypto from "crypto";
import * as fs from "fs";
import * as path from "path";
import { Client } from "pg";
import { DATABASES, DbName } from "../src/databases";
import { findPgTool, pgEnv } from "../src/postgres/client-programs";
import { startTestServer, TestServer } from "../test/support/server";

export const ROOT = path.resolve(__dirname, "..");
export const CLI = path.join(ROOT, "bin", "migrate.js");

/**
 * Runs one benchmark on a server (the tests' provider; `ownServer` refuses TEST_DATABASE_URL, for a
 * benchmark that must be alone on its server), stops the server after, exits 1 on an error.
 */
export function runBench(body: (server: TestServer) => Promise<void>, options: { ownServer?: boolean } = {}): void {
  const args = process.argv.slice(2);
  if (args.length) {
    const help = args.length === 1 && (args[0] === "--help" || args[0] === "-h");
    (help ? process.stdout : process.stderr).write(help ? benchUsage() : `error: unexpected arguments: ${args.join(" ")}\n${benchUsage()}`);
    process.exitCode = help ? 0 : 2;
    return;
  }
  (async () => {
    if (options.ownServer) delete process.env.TEST_DATABASE_URL;
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    require("../bin/build").ensureBuilt();
    const server = await startTestServer();
    console.log(`server: ${server.kind}`);
    try {
      await body(server);
    } finally {
      await server.stop();
    }
  })().catch((e) => {
    console.error(e);
    process.exit(1);
  });
}

/**
 * `--help` of the running benchmark, from its own file: the npm script that runs it, its opening
 * comment (what it measures, against what), and the BENCH_* variables it reads with their defaults.
 */
export function benchUsage(file = require.main?.filename ?? process.argv[1]): string {
  const relative = path.relative(ROOT, file).split(path.sep).join("/");
  const scripts: Record<string, string> = JSON.parse(fs.readFileSync(path.join(ROOT, "package.json"), "utf8")).scripts;
  const script = Object.keys(scripts).find((k) => k.startsWith("bench:") && scripts[k].endsWith(relative)) ?? relative;
  const text = fs.readFileSync(file, "utf8");
  const about = text.split("\n").filter((l, i, all) => l.startsWith("//") && all.slice(0, i).every((p) => p.startsWith("//"))).map((l) => l.replace(/^\/\/ ?/, "  "));
  const variables = [...text.matchAll(/process\.env\.(\w+) \?\? ([^);]+)[);]/g)].map((m) => `  ${m[1]} (default ${m[2].trim()})`);
  return [`Usage: npm run ${script}`, "", ...about, "", "Environment:", ...(variables.length ? variables : ["  (none)"]), ""].join("\n") + "\n";
}

/** libpq environment (password included) for the client programs, on `database` of the server. */
export function libpqEnv(server: TestServer, database = "postgres"): NodeJS.ProcessEnv {
  return pgEnv({ db: "authdb", url: urlFor(server, database), database, source: "bench", display: "" });
}

/** A PostgreSQL client program from the newest installed version. */
export function clientTool(name: "psql" | "pg_dumpall"): string {
  return path.join(path.dirname(findPgTool("pg_dump", 0)), name);
}

export function urlFor(server: TestServer, database: string): string {
  const u = new URL(server.url);
  u.pathname = "/" + database;
  return u.toString();
}

export function uniqueNames(label: string): Record<DbName, string> {
  const suffix = `${label}_${crypto.randomBytes(3).toString("hex")}`;
  return Object.fromEntries(DATABASES.map((db) => [db, `${db}_${suffix}`])) as Record<DbName, string>;
}

export function envFor(server: TestServer, names: Record<DbName, string>, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    AUTHDB_URL: urlFor(server, names.authdb),
    APIDB_URL: urlFor(server, names.apidb),
    ADMINDB_URL: urlFor(server, names.admindb),
    ...extra,
  };
}

/** Runs a command, returns its wall-clock seconds; throws if it fails. */
export function timed(cmd: string, args: string[], env: NodeJS.ProcessEnv, input?: string): number {
  const started = process.hrtime.bigint();
  const r = spawnSync(cmd, args, { env, cwd: ROOT, encoding: "utf8", input, maxBuffer: 1 << 26 });
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  if (r.status !== 0) throw new Error(`${path.basename(cmd)} ${args.join(" ")} failed: ${(r.stderr || r.stdout).trim().split("\n").slice(-3).join(" | ")}`);
  return seconds;
}

export function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

export async function sql(server: TestServer, database: string, text: string): Promise<void> {
  const c = new Client({ connectionString: urlFor(server, database) });
  await c.connect();
  try {
    await c.query(text);
  } finally {
    await c.end();
  }
}

export async function dropAll(server: TestServer, names: Record<DbName, string>): Promise<void> {
  for (const db of DATABASES) await sql(server, "postgres", `DROP DATABASE IF EXISTS "${names[db]}" WITH (FORCE)`);
}

/** One result line, and the verdict against the target: a ratio at most `maxRatio` (and `maxSeconds`). */
export function report(title: string, ours: number, baseline: number, baselineName: string, target: { maxRatio: number; maxSeconds?: number }): void {
  const ratio = ours / baseline;
  const ok = ratio <= target.maxRatio && (target.maxSeconds === undefined || ours < target.maxSeconds);
  const wanted = `ratio <= ${target.maxRatio.toFixed(2)}${target.maxSeconds === undefined ? "" : ` and < ${target.maxSeconds} s`}`;
  console.log(`${title}: ours ${ours.toFixed(3)} s, ${baselineName} ${baseline.toFixed(3)} s, ratio ${ratio.toFixed(2)} (target ${wanted}: ${ok ? "met" : "MISSED"})`);
}

/**
 * The load the backup and rehearsal benchmarks share: 20k users and profiles, 100 knowledge bases,
 * `documents` documents and `embeddings` 768-dimension embeddings, vacuumed and analyzed.
 */
export async function seedLoad(server: TestServer, names: Record<DbName, string>, documents: number, embeddings: number): Promise<void> {
  const seeded = Date.now();
  await sql(server, names.authdb, `INSERT INTO users (email, password_hash) SELECT 'user' || g || '@example.com', md5(g::text) FROM generate_series(1, 20000) g`);
  await sql(server, names.apidb, `INSERT INTO profiles (user_id, name, address) SELECT uuid_generate_v4(), 'name ' || g, 'street ' || g FROM generate_series(1, 20000) g`);
  await sql(server, names.admindb, `
    INSERT INTO knowledge_bases (name, user_id) SELECT 'kb ' || g, uuid_generate_v4() FROM generate_series(1, 100) g;
    INSERT INTO documents (knowledge_base_id, filename, original_filename, file_path, mime_type, file_size, text_content, tags)
      SELECT (SELECT id FROM knowledge_bases ORDER BY id OFFSET (g % 100) LIMIT 1), 'doc' || g || '.pdf', 'Document ' || g || '.pdf',
             '/data/' || g, 'application/pdf', 1000 + g, repeat('lorem ipsum ' || g || ' ', 20), ARRAY['tag' || (g % 10)]
        FROM generate_series(1, ${documents}) g;
    INSERT INTO langchain_pg_embedding (collection_id, embedding, document, document_id, chunk_index)
      SELECT (SELECT uuid FROM langchain_pg_collection LIMIT 1),
             (SELECT array_agg(((g * 7 + i) % 1000)::real / 1000) FROM generate_series(1, 768) i)::vector,
             'chunk ' || g, NULL, g % 8
        FROM generate_series(1, ${embeddings}) g;`);
  await sql(server, names.admindb, `VACUUM ANALYZE`);
  console.log(`seeded ${documents} documents, ${embeddings} embeddings in ${((Date.now() - seeded) / 1000).toFixed(1)} s`);
}
