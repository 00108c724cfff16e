// The command line's usage, without a database: per-command flags, --help, the command list, bad
// flags and arguments refused before anything starts, --env files, no npm banner on stdout.
import { spawnSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { cliEnv, runCli } from "./support/cli";

const ROOT = path.resolve(__dirname, "..");

/** Each command's own flags (every command also takes --env, --verbose and --help). */
const FLAGS: Record<string, string[]> = {
  "migration:run": ["--db", "--to", "--dry-run", "--no-backup", "--keep", "--unsafe", "--keep-maintenance", "--json"],
  "migration:complete": ["--db", "--to", "--dry-run", "--no-backup", "--keep", "--force", "--keep-maintenance", "--json"],
  "migration:revert": ["--db", "--steps", "--to", "--dry-run", "--no-backup", "--keep", "--json"],
  "migration:show": ["--db", "--all-envs", "--allow-unreachable", "--json"],
  "migration:lint": ["--db", "--all", "--json"],
  "migration:rehearse": ["--db", "--from-backup", "--scratch-url", "--json"],
  "migration:check": ["--db", "--shadow-url", "--fail-on-pending", "--json"],
  "migration:baseline": ["--db", "--shadow-url", "--json"],
  "migration:repair": ["--db", "--json"],
  "migration:squash": ["--db", "--to", "--shadow-url", "--json"],
  "migration:generate": ["--db", "--rename", "--drop", "--check", "--json"],
  "migration:create": ["--db", "--json"],
  "db:backup": ["--db", "--keep", "--json"],
  "db:restore": ["--db", "--into", "--json"],
  "db:up": [],
  "db:down": [],
  "db:reset": [],
  "db:destroy": [],
  "db:maintenance": ["--message", "--json"],
  "schema:docs": ["--check", "--json"],
};
const COMMANDS = Object.keys(FLAGS);
const allFlags = (command: string) => [...FLAGS[command], "--env", "--verbose", "--help"];

let tmp: string;
/** Settings pointing at nothing: a command that got past its checks would fail to connect, never use the embedded server. */
let env: Record<string, string>;
beforeEach(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), "aimig-usage-"));
  env = {
    DATABASE_URL: "postgres://u:pw-secret-1@127.0.0.1:1/x",
    MIGRATION_BACKUP_DIR: path.join(tmp, "backups"),
    MIGRATIONS_DIR: path.join(tmp, "migrations"),
  };
});
afterEach(() => fs.rmSync(tmp, { recursive: true, force: true }));

function oneLineError(stderr: string): string {
  const lines = stderr.trim().split("\n");
  expect(lines).toHaveLength(1);
  expect(lines[0]).toMatch(/^error: /);
  return lines[0];
}

describe("--help", () => {
  it.each(COMMANDS)("%s: usage, every flag with its description, an example; exit 0", async (command) => {
    for (const help of ["--help", "-h"]) {
      const r = await runCli([command, help], env);
      expect(r.stderr).toBe("");
      expect(r.code).toBe(0);
      const lines = r.stdout.split("\n");
      expect(lines[0]).toMatch(new RegExp(`^Usage: npm run ${command} -- `));
      const options = lines.slice(lines.indexOf("Options:") + 1, lines.indexOf("", lines.indexOf("Options:")));
      // one line per flag: the flag, its value if it takes one, its description
      expect(options.map((l) => /^ {2}(?:-h, )?(--[\w-]+)(?: <[\w]+>)? {2,}\S/.exec(l)?.[1])).toEqual(allFlags(command));
      expect(lines[lines.indexOf("Example:") + 1]).toMatch(new RegExp(`^ {2}npm run ${command}\\b`));
    }
    expect((await runCli(["help", command], env)).stdout).toMatch(new RegExp(`^Usage: npm run ${command} -- `));
    expect(fs.existsSync(env.MIGRATION_BACKUP_DIR)).toBe(false);
  });

  it("no command or `help`: the list of commands, one line each; exit 0", async () => {
    for (const args of [[], ["help"], ["--help"]]) {
      const r = await runCli(args, env);
      expect(r.code).toBe(0);
      expect(r.stderr).toBe("");
      for (const command of COMMANDS) expect(r.stdout).toMatch(new RegExp(`^ {2}${command} +\\S`, "m"));
    }
  });

  it("unknown command: one error line, the list on stdout, the closest name for a typo; exit 2", async () => {
    const r = await runCli(["migration:frob"], env);
    expect(r.code).toBe(2);
    expect(oneLineError(r.stderr)).toBe('error: unknown command "migration:frob"');
    expect(r.stdout).toMatch(/^ {2}migration:show +\S/m);
    const typo = await runCli(["migraton:run"], env);
    expect(typo.code).toBe(2);
    expect(oneLineError(typo.stderr)).toBe('error: unknown command "migraton:run" (did you mean migration:run?)');
  });
});

describe("strict flags", () => {
  it.each(COMMANDS.filter((c) => c !== "db:reset" && c !== "db:destroy"))("%s: an unknown flag is exit 2 naming the valid ones", async (command) => {
    const r = await runCli([command, "--frobnicate"], env);
    expect(r.code).toBe(2);
    expect(oneLineError(r.stderr)).toBe(`error: ${command}: unknown option --frobnicate (valid: ${allFlags(command).join(", ")})`);
    expect(r.stdout).toBe("");
  });

  it("migration:generate: a malformed --rename or --drop is exit 2 before any connection", async () => {
    const rename = await runCli(["migration:generate", "RenamePhone", "--rename", "profiles.phone"], env);
    expect(rename.code).toBe(2);
    expect(oneLineError(rename.stderr)).toBe("error: --rename profiles.phone: expected table.old=new (a column) or old=new (a table)");
    const drop = await runCli(["migration:generate", "DropNote", "--drop", "a.b.c"], env);
    expect(drop.code).toBe(2);
    expect(oneLineError(drop.stderr)).toBe("error: --drop a.b.c: expected table.column");
    const table = await runCli(["migration:generate", "DropLogs", "--drop", "login_logs"], env);
    expect(table.code).toBe(2);
    expect(oneLineError(table.stderr)).toBe("error: --drop login_logs: generate never drops a table (TypeORM leaves a table no entity names alone): drop it in a hand-written migration (migration:create)");
  });

  it("another command's flag is refused: migration:show --to", async () => {
    const r = await runCli(["migration:show", "--to", "Init"], env);
    expect(r.code).toBe(2);
    expect(oneLineError(r.stderr)).toBe("error: migration:show: unknown option --to (valid: --db, --all-envs, --allow-unreachable, --json, --env, --verbose, --help)");
  });

  it("db:backup --to Init: exit 2, no backup taken, no server used", async () => {
    const r = await runCli(["db:backup", "--to", "Init"], env);
    expect(r.code).toBe(2);
    expect(oneLineError(r.stderr)).toBe("error: db:backup: unknown option --to (valid: --db, --keep, --json, --env, --verbose, --help)");
    expect(r.stdout).toBe(""); // not even the `server:` line: the configuration was never loaded
    expect(fs.existsSync(env.MIGRATION_BACKUP_DIR)).toBe(false);
  });

  it("an unexpected positional argument: exit 2, nothing done", async () => {
    const show = await runCli(["migration:show", "extra", "words"], env);
    expect(show.code).toBe(2);
    expect(oneLineError(show.stderr)).toBe('error: migration:show: unexpected arguments "extra" "words" (usage: npm run migration:show -- [options])');
    expect(show.stdout).toBe("");
    const create = await runCli(["migration:create", "AddThing", "More", "--db", "apidb"], env);
    expect(create.code).toBe(2);
    expect(oneLineError(create.stderr)).toMatch(/^error: migration:create: unexpected argument "More"/);
    expect(fs.existsSync(env.MIGRATIONS_DIR)).toBe(false);
    const backup = await runCli(["db:backup", "apidb"], env);
    expect(backup.code).toBe(2);
    expect(fs.existsSync(env.MIGRATION_BACKUP_DIR)).toBe(false);
  });

  it("a missing argument or flag value: exit 2", async () => {
    const restore = await runCli(["db:restore"], env);
    expect(restore.code).toBe(2);
    expect(oneLineError(restore.stderr)).toBe("error: db:restore: missing <backup> (usage: npm run db:restore -- <backup> [options])");
    const db = await runCli(["migration:show", "--db"], env);
    expect(db.code).toBe(2);
    expect(oneLineError(db.stderr)).toMatch(/^error: migration:show: --db <db> needs a value/);
  });

  it("values are checked before anything starts: --steps, --keep, --db, --shadow-url, the name", async () => {
    const cases: [string[], string][] = [
      [["migration:revert", "--db", "apidb", "--steps", "0"], "error: --steps must be a positive whole number"],
      [["migration:run", "--keep", "none"], "error: MIGRATION_BACKUP_KEEP / --keep must be a whole number of runs, at least 1"],
      [["migration:show", "--db", "usersdb"], 'error: unknown database "usersdb" (expected one of authdb, apidb, admindb)'],
      [["migration:check", "--shadow-url", "postgres://u:pw@h/s"], "error: --shadow-url must not carry a password (other users can read process arguments): set MIGRATION_SHADOW_URL, or PGPASSWORD"],
      [["migration:generate", "add-thing"], 'error: migration name "add-thing" must be letters and digits, starting with a letter (PascalCase)'],
      [["db:restore", "x", "--db", "apidb", "--db", "authdb"], "error: db:restore needs exactly one --db <authdb|apidb|admindb>"],
    ];
    for (const [args, message] of cases) {
      const r = await runCli(args, env);
      expect(r.code).toBe(2);
      expect(oneLineError(r.stderr)).toBe(message);
      expect(r.stdout).toBe(""); // no `server:` line: nothing was started or connected
    }
  });
});

describe("--env <name>", () => {
  const write = (name: string, lines: string[]) => fs.writeFileSync(path.join(tmp, name), lines.join("\n") + "\n");

  it("a missing .env.<name> is exit 2 naming the file", async () => {
    const r = await runCli(["migration:show", "--env", "nosuch"], env, { cwd: tmp });
    expect(r.code).toBe(2);
    expect(oneLineError(r.stderr)).toBe(`error: --env nosuch: .env.nosuch not found in ${fs.realpathSync(tmp)} (no .env.<name> file there)`);
    expect(r.stdout).toBe("");
  });

  it("precedence: the environment, then .env.<name>, then .env", async () => {
    write(".env", ["MIGRATION_LOCK_TIMEOUT=from-dotenv", "MIGRATION_STATEMENT_TIMEOUT=stmt-from-dotenv"]);
    write(".env.staging", ["MIGRATION_LOCK_TIMEOUT=from-staging"]);
    const lockTimeout = (value: string) => `error: MIGRATION_LOCK_TIMEOUT must be a duration like 5s, 500ms, 15min or 0 (got "${value}")`;

    const plain = await runCli(["migration:run"], env, { cwd: tmp });
    expect(oneLineError(plain.stderr)).toBe(lockTimeout("from-dotenv"));
    const staging = await runCli(["migration:run", "--env", "staging"], env, { cwd: tmp });
    expect(staging.code).toBe(2);
    expect(oneLineError(staging.stderr)).toBe(lockTimeout("from-staging"));
    const fromEnv = await runCli(["migration:run", "--env", "staging"], { ...env, MIGRATION_LOCK_TIMEOUT: "from-env" }, { cwd: tmp });
    expect(oneLineError(fromEnv.stderr)).toBe(lockTimeout("from-env"));
    // what .env.staging leaves unset still comes from .env
    write(".env.staging", ["MIGRATION_LOCK_TIMEOUT=5s"]);
    const fallback = await runCli(["migration:run", "--env", "staging"], env, { cwd: tmp });
    expect(fallback.code).toBe(2);
    expect(oneLineError(fallback.stderr)).toBe('error: MIGRATION_STATEMENT_TIMEOUT must be a duration like 5s, 500ms, 15min or 0 (got "stmt-from-dotenv")');
    expect(fs.existsSync(env.MIGRATION_BACKUP_DIR)).toBe(false);
  });

  it("settings from .env.<name> are checked before anything starts (MIGRATION_LOCK_WAIT_MS)", async () => {
    write(".env.staging", ["MIGRATION_LOCK_WAIT_MS=soon"]);
    const r = await runCli(["db:backup", "--env", "staging"], env, { cwd: tmp });
    expect(r.code).toBe(2);
    expect(oneLineError(r.stderr)).toBe("error: MIGRATION_LOCK_WAIT_MS must be a whole number of milliseconds");
    expect(fs.existsSync(env.MIGRATION_BACKUP_DIR)).toBe(false);
  });

  it("the first line names the environment; --json adds nothing to stdout; no password shown", async () => {
    const { DATABASE_URL, ...rest } = env;
    write(".env.staging", [`DATABASE_URL=${DATABASE_URL}`]);
    const r = await runCli(["migration:show", "--env", "staging"], rest, { cwd: tmp });
    expect(r.code).toBe(1); // nothing listens on port 1
    expect(r.stdout.split("\n")[0]).toBe("env staging: server: authdb=u@127.0.0.1:1/authdb apidb=u@127.0.0.1:1/apidb admindb=u@127.0.0.1:1/admindb (from .env.staging)");
    expect(oneLineError(r.stderr)).toBe("error: authdb: cannot connect to 127.0.0.1:1: connection refused");
    const json = await runCli(["migration:show", "--env", "staging", "--json"], rest, { cwd: tmp });
    expect(json.code).toBe(1);
    expect(json.stdout).toBe("");
    expect(r.stdout + r.stderr + json.stderr).not.toContain("pw-secret-1");
  });
});

describe("through npm", () => {
  const npm = (args: string[]) => spawnSync("npm", args, { cwd: ROOT, env: cliEnv({}), encoding: "utf8" });

  it("npm run -s prints no `> pkg@version script` banner on stdout", () => {
    const r = npm(["run", "-s", "migration:create", "--", "--help"]);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/^Usage: npm run migration:create -- /);
    expect(r.stdout).not.toMatch(/^> /m);
  });

  it("npm's own messages are not silenced: a misspelt script says so, with the closest names", () => {
    const r = npm(["run", "migraton:run"]);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('Missing script: "migraton:run"');
    expect(r.stderr).toContain("npm run migration:run");
  });

  it("--json through npm: with -s stdout is the JSON alone; without, the command says how on stderr", () => {
    const quiet = npm(["run", "-s", "schema:docs", "--", "--check", "--json"]);
    expect(JSON.parse(quiet.stdout)).toMatchObject({ command: "schema:docs" });
    expect(quiet.stderr).toBe("");
    const loud = npm(["run", "schema:docs", "--", "--check", "--json"]);
    expect(loud.stdout).toMatch(/^\s*> ai-micro-migrations@[\d.]+ schema:docs\n/);
    expect(JSON.parse(loud.stdout.slice(loud.stdout.indexOf("{")))).toMatchObject({ command: "schema:docs" });
    expect(loud.stderr.trim()).toBe('note: npm printed its "> schema:docs" banner on stdout before the JSON: npm run -s schema:docs -- ... keeps stdout to the JSON alone');
  });

  const benches = Object.keys(JSON.parse(fs.readFileSync(path.join(ROOT, "package.json"), "utf8")).scripts).filter((k) => k.startsWith("bench:"));
  it.each(benches)("npm run %s -- --help: what it measures and its settings, nothing run; another argument is exit 2", (script) => {
    const r = npm(["run", "-s", script, "--", "--help"]);
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
    const [usage, blank, ...rest] = r.stdout.split("\n");
    expect(usage).toBe(`Usage: npm run ${script}`);
    expect(blank).toBe("");
    expect(rest[0]).toMatch(/^ {2}\S/); // the benchmark's own description
    // Only the help: a run would print its server and its figures after it.
    expect(r.stdout).not.toMatch(/^server: /m);
    expect(r.stdout.trimEnd().split("\n").slice(-1)[0]).toMatch(/^ {2}(BENCH_\w+|PGBENCH) \(default .+\)$|^ {2}\(none\)$/);
    const bad = npm(["run", "-s", script, "--", "--frobnicate"]);
    expect(bad.status).toBe(2);
    expect(bad.stderr.split("\n")[0]).toBe("error: unexpected arguments: --frobnicate");
  }, 120_000);
});
