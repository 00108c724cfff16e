// A throwaway PgBouncer in front of the test server, for the tests that run migrations through a
// pooler. Listens on 127.0.0.1 only, on a free port; every database name is forwarded (`*`), so
// per-test databases work. Clients log in to PgBouncer with SCRAM; PgBouncer logs in to the server
// as the same user with the plain password it holds in its auth_file (in a private temp dir).
// PgBouncer refuses to run as root: as root it is started with its own `-u postgres` switch.
import { ChildProcess, execFileSync, spawn } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { Client } from "pg";
import { freePort } from "../../src/postgres/local-cluster";

export type PoolMode = "transaction" | "statement" | "session";

export interface PgBouncerOptions {
  /** Default "transaction". */
  poolMode?: PoolMode;
  /** Default 200. */
  maxClientConn?: number;
  /** Server connections per (database, user) pair. Default 10. */
  defaultPoolSize?: number;
  /** Further `[pgbouncer]` settings, written last (so they win). */
  settings?: Record<string, string | number>;
  /** How long to wait for a real login through it. Default 15 s. */
  startTimeoutMs?: number;
}

export interface PgBouncer {
  /** URL of `database` through PgBouncer, as the server URL's user. */
  url(database: string): string;
  port: number;
  /** The directory holding pgbouncer.ini, pgbouncer.log, the auth file (removed by stop()). */
  dir: string;
  stop(): Promise<void>;
}

const isRoot = () => typeof process.getuid === "function" && process.getuid() === 0;

/** The pgbouncer binary: /usr/sbin/pgbouncer, else the one on PATH. Throws when there is none. */
export function findPgBouncer(): string {
  const candidates = ["/usr/sbin/pgbouncer", "/usr/bin/pgbouncer", "/usr/local/bin/pgbouncer"];
  for (const dir of (process.env.PATH ?? "").split(path.delimiter)) if (dir) candidates.push(path.join(dir, "pgbouncer"));
  for (const c of candidates) {
    try {
      fs.accessSync(c, fs.constants.X_OK);
      return c;
    } catch {
      // next
    }
  }
  throw new Error("pgbouncer is not installed: bash scripts/provision.sh");
}

function tail(file: string, lines = 15): string {
  try {
    return fs.readFileSync(file, "utf8").trimEnd().split("\n").slice(-lines).join("\n");
  } catch {
    return "";
  }
}

/** A value for the auth_file: double quotes doubled. */
const quoted = (s: string) => `"${s.replace(/"/g, '""')}"`;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function exited(child: ChildProcess): boolean {
  return child.exitCode !== null || child.signalCode !== null;
}

function waitForExit(child: ChildProcess, ms: number): Promise<boolean> {
  if (exited(child)) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    child.once("exit", () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

async function canLogIn(url: string): Promise<string | undefined> {
  const client = new Client({ connectionString: url, connectionTimeoutMillis: 3000 });
  client.on("error", () => undefined);
  try {
    await client.connect();
    await client.query("SELECT 1");
    return undefined;
  } catch (e) {
    return (e as Error).message;
  } finally {
    await client.end().catch(() => undefined);
  }
}

/**
 * Starts a PgBouncer forwarding to the server of `serverUrl` (a superuser URL with its password),
 * and waits until a real login through it runs `SELECT 1`. Throws with the tail of its log when
 * it does not come up.
 */
export async function startPgBouncer(serverUrl: string, options: PgBouncerOptions = {}): Promise<PgBouncer> {
  const binary = findPgBouncer();
  const server = new URL(serverUrl);
  const user = decodeURIComponent(server.username);
  const password = decodeURIComponent(server.password);
  const serverHost = server.hostname === "localhost" || server.hostname === "" ? "127.0.0.1" : server.hostname.replace(/^\[|\]$/g, "");
  const serverPort = Number(server.port || 5432);
  const probeDatabase = decodeURIComponent(server.pathname.replace(/^\//, "")) || "postgres";
  if (!user) throw new Error("startPgBouncer: the server URL names no user");

  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "aimig-pgbouncer-"));
  const ini = path.join(dir, "pgbouncer.ini");
  const logFile = path.join(dir, "pgbouncer.log");
  const stderrFile = path.join(dir, "stderr.log");
  const authFile = path.join(dir, "users.txt");
  const owner = isRoot()
    ? {
        uid: Number(execFileSync("id", ["-u", "postgres"], { encoding: "utf8" }).trim()),
        gid: Number(execFileSync("id", ["-g", "postgres"], { encoding: "utf8" }).trim()),
      }
    : undefined;
  const give = (p: string) => owner && fs.chownSync(p, owner.uid, owner.gid);
  give(dir);

  fs.writeFileSync(authFile, `${quoted(user)} ${quoted(password)}\n`, { mode: 0o600 });
  give(authFile);

  const cleanupDir = () => fs.rmSync(dir, { recursive: true, force: true });
  const startTimeoutMs = options.startTimeoutMs ?? 15_000;
  let lastError = "";

  // freePort() only proposes a port: another process may take it before PgBouncer binds it; then retry.
  for (let attempt = 1; attempt <= 3; attempt++) {
    const port = await freePort();
    const settings: Record<string, string | number> = {
      listen_addr: "127.0.0.1",
      listen_port: port,
      unix_socket_dir: "",
      logfile: logFile,
      pidfile: path.join(dir, "pgbouncer.pid"),
      auth_type: "scram-sha-256",
      auth_file: authFile,
      pool_mode: options.poolMode ?? "transaction",
      max_client_conn: options.maxClientConn ?? 200,
      default_pool_size: options.defaultPoolSize ?? 10,
      // node-postgres and TypeORM may send these; PgBouncer rejects unknown startup parameters.
      ignore_startup_parameters: "extra_float_digits,options",
      // A failed server login is retried after this long (default 15 s: too slow for tests).
      server_login_retry: 1,
      ...options.settings,
    };
    fs.writeFileSync(
      ini,
      `[databases]\n* = host=${serverHost} port=${serverPort}\n\n[pgbouncer]\n` +
        Object.entries(settings)
          .map(([k, v]) => `${k} = ${v}`)
          .join("\n") +
        "\n",
      { mode: 0o600 },
    );
    give(ini);
    fs.rmSync(logFile, { force: true });

    const stderrFd = fs.openSync(stderrFile, "w");
    const args = isRoot() ? ["-u", "postgres", ini] : [ini];
    const child = spawn(binary, args, { cwd: dir, stdio: ["ignore", "ignore", stderrFd] });
    fs.closeSync(stderrFd);
    child.on("error", (e) => (lastError = e.message));
    // Safety net: never leave a pgbouncer behind when the process exits without stop().
    const killOnExit = () => {
      if (!exited(child)) child.kill("SIGKILL");
    };
    process.once("exit", killOnExit);

    const url = (database: string) =>
      `postgres://${encodeURIComponent(user)}:${encodeURIComponent(password)}@127.0.0.1:${port}/${encodeURIComponent(database)}`;
    const kill = async () => {
      if (!exited(child)) {
        child.kill("SIGTERM"); // PgBouncer: fast shutdown, closes all connections
        if (!(await waitForExit(child, 5000))) {
          child.kill("SIGKILL");
          await waitForExit(child, 5000);
        }
      }
      process.removeListener("exit", killOnExit);
    };

    const deadline = Date.now() + startTimeoutMs;
    let ready = false;
    while (Date.now() < deadline && !exited(child)) {
      const error = await canLogIn(url(probeDatabase));
      if (error === undefined) {
        ready = true;
        break;
      }
      lastError = error;
      // The server refused the login: waiting will not help.
      if (/password authentication failed|authentication method|does not exist/i.test(error)) break;
      await sleep(50);
    }
    if (ready) {
      let stopped = false;
      return {
        url,
        port,
        dir,
        stop: async () => {
          if (stopped) return;
          stopped = true;
          await kill();
          cleanupDir();
        },
      };
    }

    const exitedEarly = exited(child) ? `pgbouncer exited (${child.exitCode ?? child.signalCode})` : undefined;
    const log = tail(logFile) || tail(stderrFile);
    await kill();
    const portTaken = /could not bind|Address already in use/i.test(log);
    if (portTaken && attempt < 3) continue;
    cleanupDir();
    const why = exitedEarly ?? (Date.now() < deadline ? "login refused" : `no login within ${startTimeoutMs} ms`);
    throw new Error(`PgBouncer did not come up on 127.0.0.1:${port}: ${why}; last error: ${lastError}\n--- pgbouncer log ---\n${log}`);
  }
  cleanupDir();
  throw new Error(`PgBouncer did not come up: ${lastError}`);
}
