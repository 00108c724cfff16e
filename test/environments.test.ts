// Environments: `--env <name>` takes its server from .env.<name> by one rule in every command (a
// shell that names a server too is refused), and migration:show lines every environment up in one
// table; one that cannot be reached says why, is `unreachable` in its cells, and fails the command
// unless --allow-unreachable.
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { DATABASES } from "../src/databases";
import { runCli } from "./support/cli";
import { serverUrl, testDatabases, TestDatabases, withClient } from "./support/databases";

const envFile = (dbs: TestDatabases) => DATABASES.map((db) => `${db.toUpperCase()}_URL=${dbs.env[`${db.toUpperCase()}_URL`]}`).join("\n") + `\nMIGRATION_BACKUP_DIR=${dbs.env.MIGRATION_BACKUP_DIR}\n`;

describe("environments", () => {
  const dev = testDatabases("envdev");
  const staging = testDatabases("envstaging");
  const cwd = fs.mkdtempSync(path.join(os.tmpdir(), "aimig-envs-"));
  // Only what the files say: no URL in the process environment.
  const bare = { MIGRATION_CONNECT_TIMEOUT_MS: "3000" };
  beforeAll(() => {
    fs.writeFileSync(path.join(cwd, ".env.dev"), envFile(dev));
    fs.writeFileSync(path.join(cwd, ".env.staging"), envFile(staging));
    fs.writeFileSync(path.join(cwd, ".env.down"), "DATABASE_URL=postgres://u:secret-pw@127.0.0.1:1/postgres\n");
    fs.writeFileSync(path.join(cwd, ".env.example"), "DATABASE_URL=postgres://u:x@example.invalid/postgres\n");
  });
  afterAll(async () => {
    fs.rmSync(cwd, { recursive: true, force: true });
    await dev.drop();
    await staging.drop();
  });

  it("--env staging deploys staging only, and says so in its first line", async () => {
    const r = await runCli(["migration:run", "--env", "staging", "--to", "Init"], bare, { cwd });
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout.split("\n")[0]).toMatch(/^env staging: server: authdb=postgres@127\.0\.0\.1:\d+\/authdb_envstaging_\w+ apidb=\S+ admindb=\S+ \(from \.env\.staging\)$/);
    const devExists = await withClient("postgres", async (c) => (await c.query(`SELECT 1 FROM pg_database WHERE datname = $1`, [dev.names.authdb])).rowCount);
    expect(devExists).toBe(0);
    expect((await runCli(["migration:run", "--env", "dev"], bare, { cwd })).code).toBe(0);
  });

  it("migration:show --env dev --env staging --env down: one table, environments at different points, the unreachable one says why and fails the command", async () => {
    const r = await runCli(["migration:show", "--env", "dev", "--env", "staging", "--env", "down"], bare, { cwd });
    expect(r.stderr).toBe("");
    expect(r.code).toBe(1);
    expect(r.stdout).not.toContain("secret-pw");
    const lines = r.stdout.split("\n");
    expect(lines[0]).toMatch(/^dev: server: authdb=postgres@127\.0\.0\.1:\d+\/authdb_envdev_\w+ .* \(from \.env\.dev\)$/);
    expect(lines[2]).toBe("down: cannot be read: authdb: cannot connect to 127.0.0.1:1: connection refused");
    const row = (name: string, db: string) => lines.find((l) => new RegExp(`^${name}\\s+${db}\\s`).test(l))!.trim().split(/\s{2,}/);
    const applied = expect.stringMatching(/^applied \d{4}-\d{2}-\d{2}$/);
    expect(row("Init1795519558038", "authdb")).toEqual(["Init1795519558038", "authdb", applied, applied, "unreachable"]);
    expect(row("NormalizeRolesDefault1795519600000", "authdb")).toEqual(["NormalizeRolesDefault1795519600000", "authdb", applied, "pending", "unreachable"]);

    const tolerated = await runCli(["migration:show", "--env", "dev", "--env", "down", "--allow-unreachable"], bare, { cwd });
    expect(tolerated.code).toBe(0);
    expect(tolerated.stdout).toContain("unreachable");
    const alone = await runCli(["migration:show", "--env", "dev", "--allow-unreachable"], bare, { cwd });
    expect(alone.code).toBe(2);
    expect(alone.stderr.trim()).toBe("error: migration:show: --allow-unreachable goes with several --env (or --all-envs)");
    const allUp = await runCli(["migration:show", "--env", "dev", "--env", "staging"], bare, { cwd });
    expect(allUp.code).toBe(0);
    expect(allUp.stdout).not.toContain("unreachable");

    const json = await runCli(["migration:show", "--all-envs", "--json"], bare, { cwd });
    expect(json.code).toBe(1);
    const report = JSON.parse(json.stdout);
    expect(report.environments.map((e: { name: string }) => e.name)).toEqual(["dev", "down", "staging"]);
    const normalize = report.migrations.find((m: { name: string }) => m.name === "NormalizeRolesDefault1795519600000");
    expect(normalize.cells.staging).toEqual({ state: "pending" });
    expect(normalize.cells.dev.state).toBe("applied");
    expect(normalize.cells.down).toEqual({ state: "unreachable" });
    expect(report.environments.find((e: { name: string }) => e.name === "down").error).toMatch(/connection refused/);
    expect(report.migrations.map((m: { timestamp: number }) => m.timestamp)).toEqual([...report.migrations.map((m: { timestamp: number }) => m.timestamp)].sort());
  });

  it("an edited migration shows as EDITED in the environment that applied it", async () => {
    // The history of staging says Init was applied with another checksum.
    await withClient(staging.names.apidb, (c) => c.query(`UPDATE migrations_history SET checksum = 'x' WHERE name = 'Init1795519558038'`));
    const json = await runCli(["migration:show", "--env", "dev", "--env", "staging", "--json"], bare, { cwd });
    const init = JSON.parse(json.stdout).migrations.find((m: { db: string; name: string }) => m.db === "apidb" && m.name === "Init1795519558038");
    expect(init.cells.staging.state).toBe("edited");
    expect(init.cells.dev.state).toBe("applied");
  });

  it("a misspelt --env is exit 2 listing the environments found, in migration:show and every other command; nothing read", async () => {
    const found = "(found: .env.dev, .env.down, .env.staging)";
    const single = await runCli(["migration:run", "--env", "stagging"], bare, { cwd });
    expect(single.code).toBe(2);
    expect(single.stderr.trim()).toBe(`error: --env stagging: .env.stagging not found in ${fs.realpathSync(cwd)} ${found}`);
    const multi = await runCli(["migration:show", "--env", "dev", "--env", "stagging"], bare, { cwd });
    expect(multi.code).toBe(2);
    expect(multi.stderr.trim()).toBe(`error: --env stagging: .env.stagging not found in ${fs.realpathSync(cwd)} ${found}`);
    expect(single.stdout + multi.stdout).toBe("");
  });

  it("a shell that names a server is never mixed with .env.<name>'s: refused (exit 2) before anything is read or created", async () => {
    const elsewhere = testDatabases("envshell"); // not created: a command that used it would create it
    const shell = { ...bare, DATABASE_URL: serverUrl("postgres"), AUTHDB_NAME: elsewhere.names.authdb, APIDB_NAME: elsewhere.names.apidb, ADMINDB_NAME: elsewhere.names.admindb };
    const expected = "error: --env dev: the shell sets ADMINDB_NAME, APIDB_NAME, AUTHDB_NAME, DATABASE_URL and .env.dev sets ADMINDB_URL, APIDB_URL, AUTHDB_URL: unset the shell's (or leave out --env), so one place says which server";
    const run = await runCli(["migration:run", "--env", "dev"], shell, { cwd });
    expect(run.code).toBe(2);
    expect(run.stderr.trim()).toBe(expected);
    const show = await runCli(["migration:show", "--env", "dev", "--env", "staging"], shell, { cwd });
    expect(show.code).toBe(2);
    expect(show.stderr.trim()).toBe(expected);
    expect(run.stdout + show.stdout).toBe("");
    const created = await withClient("postgres", async (c) => (await c.query(`SELECT 1 FROM pg_database WHERE datname = ANY($1)`, [Object.values(elsewhere.names)])).rowCount);
    expect(created).toBe(0);
  });

  it("an .env.<name> that names no server takes the shell's, and the first line says so; with neither, exit 2", async () => {
    fs.writeFileSync(path.join(cwd, ".env.ci"), "MIGRATION_LOCK_TIMEOUT=200ms\n");
    try {
      const r = await runCli(["migration:show", "--env", "ci", "--db", "authdb"], { ...bare, ...dev.env }, { cwd });
      expect(r.stderr).toBe("");
      expect(r.code).toBe(0);
      expect(r.stdout.split("\n")[0]).toMatch(/^env ci: server: authdb=postgres@127\.0\.0\.1:\d+\/authdb_envdev_\w+ .* \(from the shell: \.env\.ci names no server\)$/);
      const none = await runCli(["migration:show", "--env", "ci"], bare, { cwd });
      expect(none.code).toBe(2);
      expect(none.stderr.trim()).toBe("error: --env ci: .env.ci names no server (set DATABASE_URL, or AUTHDB_URL, APIDB_URL and ADMINDB_URL, in it)");
      expect(none.stdout).toBe("");
    } finally {
      fs.rmSync(path.join(cwd, ".env.ci"));
    }
  });

  it("without --env, the first line says where the server came from: the shell, else .env", async () => {
    const fromShell = await runCli(["migration:show", "--db", "authdb"], { ...bare, ...staging.env }, { cwd });
    expect(fromShell.code).toBe(0);
    expect(fromShell.stdout.split("\n")[0]).toMatch(/^server: authdb=\S+\/authdb_envstaging_\w+ .* \(from the shell\)$/);
    fs.writeFileSync(path.join(cwd, ".env"), envFile(dev));
    try {
      const fromDotEnv = await runCli(["migration:show", "--db", "authdb"], bare, { cwd });
      expect(fromDotEnv.code).toBe(0);
      expect(fromDotEnv.stdout.split("\n")[0]).toMatch(/^server: authdb=\S+\/authdb_envdev_\w+ .* \(from \.env\)$/);
    } finally {
      fs.rmSync(path.join(cwd, ".env"));
    }
  });
});
