// A PostgreSQL cluster run from the installed server binaries: the embedded default database
// (persistent, under .pgdata/) and the throwaway server of the tests. Listens on 127.0.0.1 only,
// password (scram) auth. initdb refuses root, so as root the server runs as the `postgres` user.
import { execFileSync, spawnSync } from "child_process";
import * as crypto from "crypto";
import * as fs from "fs";
import * as net from "net";
import * as os from "os";
import * as path from "path";
import { pgBinDir } from "../config";

export interface PostgresInstall {
  binDir: string;
  version: number;
  hasVector: boolean;
}

export interface ClusterInfo {
  /** Directory holding `data/` and `server.json`. */
  root: string;
  port: number;
  user: string;
  password: string;
  version: number;
}

const SEARCH_VERSIONS = [15, 16, 17, 18, 14];

/** Installed servers, PostgreSQL 15 first, those with pgvector before those without. */
export function findPostgresInstalls(): PostgresInstall[] {
  const dirs: Array<{ binDir: string; version: number }> = [];
  const binDir = pgBinDir();
  if (binDir) dirs.push({ binDir, version: 0 });
  for (const v of SEARCH_VERSIONS) dirs.push({ binDir: `/usr/lib/postgresql/${v}/bin`, version: v });
  const found: PostgresInstall[] = [];
  for (const { binDir, version } of dirs) {
    if (!fs.existsSync(path.join(binDir, "postgres")) || !fs.existsSync(path.join(binDir, "initdb"))) continue;
    const share = shareDirOf(binDir, version);
    found.push({ binDir, version: version || versionOf(binDir), hasVector: fs.existsSync(path.join(share, "extension", "vector.control")) });
  }
  return found.sort((a, b) => Number(b.hasVector) - Number(a.hasVector));
}

function shareDirOf(binDir: string, version: number): string {
  try {
    return execFileSync(path.join(binDir, "pg_config"), ["--sharedir"], { encoding: "utf8" }).trim();
  } catch {
    return `/usr/share/postgresql/${version}`;
  }
}

function versionOf(binDir: string): number {
  const out = execFileSync(path.join(binDir, "postgres"), ["--version"], { encoding: "utf8" });
  return Number(/(\d+)/.exec(out)?.[1] ?? 0);
}

export function pickPostgresInstall(): PostgresInstall {
  const [best] = findPostgresInstalls();
  if (!best) throw new Error("no PostgreSQL server binaries found (run scripts/provision.sh, or set PG_BIN_DIR)");
  return best;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

const isRoot = () => typeof process.getuid === "function" && process.getuid() === 0;

function postgresIds(): { uid: number; gid: number } {
  const uid = Number(execFileSync("id", ["-u", "postgres"], { encoding: "utf8" }).trim());
  const gid = Number(execFileSync("id", ["-g", "postgres"], { encoding: "utf8" }).trim());
  return { uid, gid };
}

/** Runs a server binary, as `postgres` when we are root. Throws with its output on failure. */
function runServerTool(binary: string, args: string[]): string {
  const [cmd, argv] = isRoot() ? ["runuser", ["-u", "postgres", "--", binary, ...args]] : [binary, args];
  // cwd: a directory the server's user can enter (the checkout may not be one).
  const result = spawnSync(cmd, argv, { encoding: "utf8", cwd: os.tmpdir() });
  if (result.status !== 0) {
    const output = `${result.stdout ?? ""}${result.stderr ?? ""}`.trim().split("\n").slice(-3).join(" | ");
    throw new Error(`${path.basename(binary)} failed: ${output || result.error?.message}`);
  }
  return result.stdout;
}

function giveToPostgres(p: string): void {
  if (!isRoot()) return;
  const { uid, gid } = postgresIds();
  fs.chownSync(p, uid, gid);
}

const infoFileOf = (root: string) => path.join(root, "server.json");

function storedInfo(root: string): { dataDir?: string; binDir?: string } {
  try {
    return JSON.parse(fs.readFileSync(infoFileOf(root), "utf8"));
  } catch {
    return {};
  }
}

function dataDirOf(root: string): string {
  return storedInfo(root).dataDir ?? path.join(root, "data");
}

/** True when the `postgres` user can reach `dir` (a checkout under a 0700 home or mktemp dir cannot). */
function postgresCanReach(dir: string): boolean {
  return spawnSync("runuser", ["-u", "postgres", "--", "test", "-x", dir]).status === 0;
}

/**
 * Where the cluster's files go: `<root>/data`, unless we are root and the server's user cannot
 * reach `root`; then under the postgres user's home, keyed by `root`, and recorded in server.json.
 */
function chooseDataDir(root: string): string {
  if (!isRoot() || postgresCanReach(root)) return path.join(root, "data");
  return externalDataDir(root);
}

/** The data directory a cluster of `root` gets under the postgres user's home (see chooseDataDir). */
function externalDataDir(root: string): string {
  let home = "/var/lib/postgresql";
  try {
    home = execFileSync("getent", ["passwd", "postgres"], { encoding: "utf8" }).split(":")[5] || home;
  } catch {
    /* no postgres user: the default */
  }
  const key = crypto.createHash("sha256").update(path.resolve(root)).digest("hex").slice(0, 12);
  return path.join(home, "ai-micro-migrations", key, "data");
}

/** Where the cluster of `root` keeps its data (it may live outside `root`, see chooseDataDir). */
export function clusterDataDir(root: string): string {
  return dataDirOf(root);
}

export function readClusterInfo(root: string): ClusterInfo | undefined {
  try {
    return { ...JSON.parse(fs.readFileSync(infoFileOf(root), "utf8")), root } as ClusterInfo;
  } catch {
    return undefined;
  }
}

export function clusterUrl(info: ClusterInfo, database = "postgres"): string {
  return `postgres://${info.user}:${encodeURIComponent(info.password)}@127.0.0.1:${info.port}/${database}`;
}

export interface InitOptions {
  /** Trade durability for speed: for throwaway test servers only. */
  fast?: boolean;
  port?: number;
}

/** Creates a cluster under `root` (which must not hold one yet). */
export async function initCluster(root: string, options: InitOptions = {}): Promise<ClusterInfo> {
  const install = pickPostgresInstall();
  fs.mkdirSync(root, { recursive: true, mode: 0o755 });
  const dataDir = chooseDataDir(root);
  if (fs.existsSync(dataDir) && fs.readdirSync(dataDir).length) {
    // A cluster whose server.json is gone (and with it the password): never wipe it silently.
    throw new Error(`${dataDir} holds a cluster but ${infoFileOf(root)} is missing: remove the directory to start afresh`);
  }
  fs.mkdirSync(path.dirname(dataDir), { recursive: true, mode: 0o755 });
  fs.mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  giveToPostgres(dataDir);

  const password = crypto.randomBytes(18).toString("base64url");
  // The password reaches initdb through a file readable only by the server's user, never argv.
  const pwDir = fs.mkdtempSync(path.join(os.tmpdir(), "pgpw-"));
  const pwFile = path.join(pwDir, "pw");
  fs.writeFileSync(pwFile, password + "\n", { mode: 0o600 });
  giveToPostgres(pwDir);
  giveToPostgres(pwFile);
  try {
    runServerTool(path.join(install.binDir, "initdb"), [
      "-D", dataDir, "-U", "postgres", "--auth=scram-sha-256", `--pwfile=${pwFile}`, "-E", "UTF8", "--locale=C.UTF-8", "--no-instructions",
    ]);
  } finally {
    fs.rmSync(pwDir, { recursive: true, force: true });
  }

  const port = options.port ?? (await freePort());
  const settings = [
    "listen_addresses = '127.0.0.1'",
    `port = ${port}`,
    "unix_socket_directories = ''",
    "max_connections = 200",
    ...(options.fast ? ["fsync = off", "synchronous_commit = off", "full_page_writes = off"] : []),
  ];
  fs.appendFileSync(path.join(dataDir, "postgresql.conf"), "\n# ai-micro-migrations\n" + settings.join("\n") + "\n");

  const info: ClusterInfo = { root, port, user: "postgres", password, version: install.version };
  const { root: _omit, ...stored } = info;
  fs.writeFileSync(infoFileOf(root), JSON.stringify({ ...stored, binDir: install.binDir, dataDir }, null, 2) + "\n", { mode: 0o600 });
  return info;
}

function binDirOf(root: string): string {
  const { binDir } = storedInfo(root);
  return binDir && fs.existsSync(binDir) ? binDir : pickPostgresInstall().binDir;
}

export function isClusterRunning(root: string): boolean {
  const pidFile = path.join(dataDirOf(root), "postmaster.pid");
  if (!fs.existsSync(pidFile)) return false;
  const pid = Number(fs.readFileSync(pidFile, "utf8").split("\n")[0]);
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

export function startCluster(root: string): void {
  if (isClusterRunning(root)) return;
  const dataDir = dataDirOf(root);
  runServerTool(path.join(binDirOf(root), "pg_ctl"), ["-D", dataDir, "-l", path.join(dataDir, "server.log"), "-w", "-t", "60", "start"]);
}

/** Stops the cluster; false when it was not running. */
export function stopCluster(root: string): boolean {
  if (!isClusterRunning(root)) return false;
  runServerTool(path.join(binDirOf(root), "pg_ctl"), ["-D", dataDirOf(root), "-m", "fast", "-w", "stop"]);
  return true;
}

/** Creates (first time) and starts the cluster under `root`; returns how to reach it. */
export async function ensureCluster(root: string, options: InitOptions = {}): Promise<{ info: ClusterInfo; created: boolean }> {
  let info = readClusterInfo(root);
  const created = !info;
  if (!info) info = await initCluster(root, options);
  startCluster(root);
  return { info, created };
}

export function destroyCluster(root: string): void {
  stopCluster(root);
  fs.rmSync(dataDirOf(root), { recursive: true, force: true });
  fs.rmSync(root, { recursive: true, force: true });
}

/**
 * Removes the cluster of `root` wherever it is: the one server.json names, and one left under the
 * postgres user's home by an earlier checkout at this path whose server.json is gone (stopped
 * first if it still runs). Returns the directories removed.
 */
export function destroyClusterEverywhere(root: string): string[] {
  const removed: string[] = [];
  const known = fs.existsSync(infoFileOf(root)) ? dataDirOf(root) : undefined;
  if (known && fs.existsSync(known)) removed.push(known);
  if (fs.existsSync(root)) removed.push(root);
  destroyCluster(root);
  const orphan = externalDataDir(root);
  if (orphan !== known && fs.existsSync(orphan)) {
    const pidFile = path.join(orphan, "postmaster.pid");
    if (fs.existsSync(pidFile)) {
      try {
        runServerTool(path.join(pickPostgresInstall().binDir, "pg_ctl"), ["-D", orphan, "-m", "fast", "-w", "stop"]);
      } catch {
        /* not running after all */
      }
    }
    fs.rmSync(path.dirname(orphan), { recursive: true, force: true });
    removed.push(path.dirname(orphan));
  }
  return removed;
}
