// Shared by the benchmarks: a server of their own (same provider as the tests), unique databases,
// commands timed by wall clock, medians and ratios. Each benchmark measures its baseline in the
// same run, on the same server, interleaved with our command.
import { spawnSync } from "child_process";
import * as crypto from "crypto";
import * as path from "path";
import { Client } from "pg";
import { DATABASES, DbName } from "../src/databases";
import { startTestServer, TestServer } from "../test/support/server";

export const ROOT = path.resolve(__dirname, "..");
export const CLI = path.join(ROOT, "bin", "migrate.js");

export async function startBenchServer(): Promise<TestServer> {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  require("../bin/build").ensureBuilt();
  const server = await startTestServer();
  console.log(`server: ${server.kind}`);
  return server;
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

/** One result line, and the verdict against the target. */
export function report(title: string, ours: number, baseline: number, baselineName: string, target: string, ok: boolean): void {
  const ratio = ours / baseline;
  console.log(`${title}: ours ${ours.toFixed(3)} s, ${baselineName} ${baseline.toFixed(3)} s, ratio ${ratio.toFixed(2)} (target ${target}: ${ok ? "met" : "MISSED"})`);
}
