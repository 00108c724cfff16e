// Environments: `--env <name>` reads .env.<name>, and migration:show lines every environment up
// in one table; one that cannot be reached is a column that says why.
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { DATABASES } from "../src/databases";
import { runCli } from "./support/cli";
import { testDatabases, TestDatabases, withClient } from "./support/databases";

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
    expect(r.stdout.split("\n")[0]).toMatch(/^env staging: server: authdb=postgres@127\.0\.0\.1:\d+\/authdb_envstaging_/);
    const devExists = await withClient("postgres", async (c) => (await c.query(`SELECT 1 FROM pg_database WHERE datname = $1`, [dev.names.authdb])).rowCount);
    expect(devExists).toBe(0);
    expect((await runCli(["migration:run", "--env", "dev"], bare, { cwd })).code).toBe(0);
  });

  it("migration:show --env dev --env staging --env down: one table, environments at different points, the unreachable one says why", async () => {
    const r = await runCli(["migration:show", "--env", "dev", "--env", "staging", "--env", "down"], bare, { cwd });
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout).not.toContain("secret-pw");
    const lines = r.stdout.split("\n");
    expect(lines[2]).toBe("down: cannot be read: authdb: cannot connect to 127.0.0.1:1: connection refused");
    const row = (name: string, db: string) => lines.find((l) => new RegExp(`^${name}\\s+${db}\\s`).test(l))!.trim().split(/\s{2,}/);
    const applied = expect.stringMatching(/^applied \d{4}-\d{2}-\d{2}$/);
    expect(row("Init1795519558038", "authdb")).toEqual(["Init1795519558038", "authdb", applied, applied, "?"]);
    expect(row("NormalizeRolesDefault1795519600000", "authdb")).toEqual(["NormalizeRolesDefault1795519600000", "authdb", applied, "pending", "?"]);

    const json = await runCli(["migration:show", "--all-envs", "--json"], bare, { cwd });
    const report = JSON.parse(json.stdout);
    expect(report.environments.map((e: { name: string }) => e.name)).toEqual(["dev", "down", "staging"]);
    const normalize = report.migrations.find((m: { name: string }) => m.name === "NormalizeRolesDefault1795519600000");
    expect(normalize.cells.staging).toEqual({ state: "pending" });
    expect(normalize.cells.dev.state).toBe("applied");
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
});
