// A throwaway primary with a streaming hot standby, for the tests that must see what a migration
// does against a read-only server. Both are local clusters from the installed server binaries
// (src/postgres/local-cluster.ts), on 127.0.0.1 only, on free ports, without unix sockets
// (unix_socket_directories = '' is inherited by the standby from the primary's postgresql.conf),
// each with its own data directory (and with it its own postmaster.pid).
import { execFileSync, spawnSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { Client } from "pg";
import {
  clusterUrl,
  destroyCluster,
  ensureCluster,
  freePort,
  pickPostgresInstall,
  startCluster,
  type ClusterInfo,
} from "../../src/postgres/local-cluster";

export interface PrimaryWithStandby {
  /** Superuser URL of database `postgres` on the primary. */
  primaryUrl: string;
  /** The same user's URL of database `postgres` on the standby (read-only). */
  standbyUrl: string;
  stop(): Promise<void>;
}

const isRoot = () => typeof process.getuid === "function" && process.getuid() === 0;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function withClient<T>(url: string, body: (c: Client) => Promise<T>): Promise<T> {
  const client = new Client({ connectionString: url, connectionTimeoutMillis: 5000 });
  client.on("error", () => undefined);
  await client.connect();
  try {
    return await body(client);
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** Runs a server binary as `postgres` when we are root, with `env` added; throws with its output. */
function runAsServerUser(binary: string, args: string[], env: Record<string, string> = {}): void {
  const [cmd, argv] = isRoot() ? ["runuser", ["-u", "postgres", "--", binary, ...args]] : [binary, args];
  const result = spawnSync(cmd, argv, { encoding: "utf8", cwd: os.tmpdir(), env: { ...process.env, ...env }, timeout: 120_000 });
  if (result.status !== 0) {
    const output = `${result.stdout ?? ""}${result.stderr ?? ""}`.trim().split("\n").slice(-5).join(" | ");
    throw new Error(`${path.basename(binary)} failed (${result.status ?? result.signal}): ${output || result.error?.message}`);
  }
}

/** Lets replication connections from 127.0.0.1 in with the password (initdb's default pg_hba.conf already does). */
async function allowReplication(primaryUrl: string): Promise<void> {
  await withClient(primaryUrl, async (c) => {
    const { rows } = await c.query(
      `SELECT count(*)::int AS n FROM pg_hba_file_rules
        WHERE type = 'host' AND 'replication' = ANY(database) AND ('all' = ANY(user_name) OR current_user = ANY(user_name))
          AND address = '127.0.0.1' AND netmask = '255.255.255.255' AND error IS NULL`,
    );
    if (rows[0].n > 0) return;
    const hbaFile = (await c.query(`SHOW hba_file`)).rows[0].hba_file as string;
    // First match wins: put the line first.
    fs.writeFileSync(hbaFile, "host replication all 127.0.0.1/32 scram-sha-256\n" + fs.readFileSync(hbaFile, "utf8"));
    await c.query(`SELECT pg_reload_conf()`);
  });
}

async function waitForStandby(standbyUrl: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = "";
  while (Date.now() < deadline) {
    try {
      const state = await withClient(standbyUrl, async (c) => {
        const recovery = (await c.query(`SELECT pg_is_in_recovery() AS r`)).rows[0].r as boolean;
        const receiver = (await c.query(`SELECT status FROM pg_stat_wal_receiver`)).rows[0]?.status as string | undefined;
        return { recovery, receiver };
      });
      if (!state.recovery) throw new Error("the standby is not in recovery");
      if (state.receiver === "streaming") return;
      last = `WAL receiver ${state.receiver ?? "not running"}`;
    } catch (e) {
      if ((e as Error).message === "the standby is not in recovery") throw e;
      last = (e as Error).message;
    }
    await sleep(50);
  }
  throw new Error(`the standby did not start streaming within ${timeoutMs} ms: ${last}`);
}

function tail(file: string, lines = 10): string {
  try {
    return fs.readFileSync(file, "utf8").trimEnd().split("\n").slice(-lines).join("\n");
  } catch {
    return "";
  }
}

/**
 * Creates a throwaway primary (fast, non-durable), clones it with `pg_basebackup -R` and starts the
 * clone as a hot standby on another port; returns once the standby is in recovery and streaming.
 */
export async function startPrimaryWithStandby(): Promise<PrimaryWithStandby> {
  const primaryRoot = fs.mkdtempSync(path.join(os.tmpdir(), "aimig-primary-"));
  const standbyRoot = fs.mkdtempSync(path.join(os.tmpdir(), "aimig-standby-"));
  // The server's user must reach both (mkdtemp makes them 0700 for root).
  fs.chmodSync(primaryRoot, 0o755);
  fs.chmodSync(standbyRoot, 0o755);
  const standbyData = path.join(standbyRoot, "data");
  const cleanup = () => {
    // Standby first: it would otherwise keep retrying the primary.
    for (const root of [standbyRoot, primaryRoot]) {
      try {
        destroyCluster(root);
      } catch {
        fs.rmSync(root, { recursive: true, force: true });
      }
    }
  };

  try {
    const { info } = await ensureCluster(primaryRoot, { fast: true });
    const primaryUrl = clusterUrl(info);
    await allowReplication(primaryUrl);

    const binDir = pickPostgresInstall().binDir;
    fs.mkdirSync(standbyData, { mode: 0o700 });
    if (isRoot()) {
      const id = (flag: string) => Number(execFileSync("id", [flag, "postgres"], { encoding: "utf8" }).trim());
      fs.chownSync(standbyData, id("-u"), id("-g"));
    }
    // The password through the environment, never argv. -R writes standby.signal and a
    // primary_conninfo (with that password) into postgresql.auto.conf.
    runAsServerUser(
      path.join(binDir, "pg_basebackup"),
      ["-D", standbyData, "-h", "127.0.0.1", "-p", String(info.port), "-U", info.user, "-R", "-X", "stream", "-c", "fast", "-w"],
      { PGPASSWORD: info.password },
    );
    // The primary's server.log lives in its data directory and came along: start a fresh one.
    fs.rmSync(path.join(standbyData, "server.log"), { force: true });

    // The copied postgresql.conf still names the primary's port: postgresql.auto.conf is read last.
    const port = await freePort();
    fs.appendFileSync(path.join(standbyData, "postgresql.auto.conf"), `port = ${port}\n`);
    // Written like initCluster does, so that startCluster/destroyCluster find the standby's data.
    const standbyInfo: ClusterInfo = { ...info, root: standbyRoot, port };
    const { root: _omit, ...stored } = standbyInfo;
    fs.writeFileSync(path.join(standbyRoot, "server.json"), JSON.stringify({ ...stored, binDir, dataDir: standbyData }, null, 2) + "\n", {
      mode: 0o600,
    });
    try {
      startCluster(standbyRoot);
    } catch (e) {
      throw new Error(`${(e as Error).message}\n--- standby log ---\n${tail(path.join(standbyData, "server.log"))}`);
    }
    const standbyUrl = clusterUrl(standbyInfo);
    await waitForStandby(standbyUrl, 30_000);

    let stopped = false;
    return {
      primaryUrl,
      standbyUrl,
      stop: async () => {
        if (stopped) return;
        stopped = true;
        cleanup();
      },
    };
  } catch (e) {
    cleanup();
    throw e;
  }
}
