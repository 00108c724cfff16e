// The PostgreSQL client programs (pg_dump, pg_restore, psql), chosen to be at least as new as the server,
// and run with the connection passed by environment: never a password on a command line.
import { spawn } from "child_process";
import * as fs from "fs";
import * as path from "path";
import { pgBinDir, type DbTarget } from "../config";

export type PgTool = "pg_dump" | "pg_restore" | "psql";

function candidates(): Array<{ dir: string; version: number }> {
  const out: Array<{ dir: string; version: number }> = [];
  const binDir = pgBinDir();
  if (binDir) out.push({ dir: binDir, version: Number.MAX_SAFE_INTEGER });
  const root = "/usr/lib/postgresql";
  if (fs.existsSync(root)) {
    for (const v of fs.readdirSync(root)) if (/^\d+$/.test(v)) out.push({ dir: path.join(root, v, "bin"), version: Number(v) });
  }
  return out.sort((a, b) => b.version - a.version);
}

/** The newest installed `tool`, which must be at least the server's major version. */
export function findPgTool(tool: PgTool, serverMajor: number): string {
  const found = candidates().find((c) => fs.existsSync(path.join(c.dir, tool)));
  if (!found) throw new Error(`${tool} not found (install postgresql-client, or set PG_BIN_DIR)`);
  if (found.version < serverMajor) throw new Error(`${tool} ${found.version} is older than the server (PostgreSQL ${serverMajor}); install a newer client`);
  return path.join(found.dir, tool);
}

/** libpq environment for `target`, with `database` instead of the target's own when given. */
export function pgEnv(target: DbTarget, database?: string, applicationName = "ai-micro-migrations"): NodeJS.ProcessEnv {
  const u = new URL(target.url);
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    PGHOST: u.hostname.replace(/^\[|\]$/g, ""),
    PGPORT: u.port || "5432",
    PGUSER: decodeURIComponent(u.username),
    PGPASSWORD: decodeURIComponent(u.password),
    PGDATABASE: database ?? target.database,
    PGCONNECT_TIMEOUT: "10",
    PGAPPNAME: applicationName,
  };
  const sslmode = u.searchParams.get("sslmode");
  if (sslmode) env.PGSSLMODE = sslmode;
  return env;
}

export interface ToolResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a client program and collects its output. */
export function runPgTool(binary: string, args: string[], env: NodeJS.ProcessEnv, signal?: AbortSignal): Promise<ToolResult> {
  return new Promise((resolve, reject) => {
    // `signal` (Ctrl-C) ends the program: its partial output is the caller's to remove.
    const child = spawn(binary, args, { env, stdio: ["ignore", "pipe", "pipe"], ...(signal ? { signal, killSignal: "SIGTERM" as const } : {}) });
    let stdout = "";
    let stderr = "";
    child.stdout!.on("data", (d: Buffer) => (stdout += d));
    child.stderr!.on("data", (d) => (stderr += d));
    child.on("error", (error) => (signal?.aborted ? undefined : reject(error)));
    child.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}

/** The first meaningful line of a tool's stderr, without its program-name prefix. */
export function firstError(stderr: string): string {
  const line = stderr.split("\n").map((l) => l.trim()).find((l) => l && !/^(pg_dump|pg_restore|psql): (detail|hint):/i.test(l) && !/^(DETAIL|HINT|CONTEXT|LINE \d+):/.test(l)) ?? "failed";
  return line.replace(/^(pg_dump|pg_restore|psql): (error: )?/, "").replace(/^(ERROR|FATAL):\s+/, "");
}
