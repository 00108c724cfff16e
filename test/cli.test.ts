// The command line as users meet it: exit codes, one-line errors naming the database, no passwords,
// nothing changed on bad input. Runs scripts/cli.ts in a child process against the test server.
import { spawn } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { readApplied } from "../src/runner/history";
import { DATABASES } from "../src/databases";
import { runCli } from "./support/cli";
import { testDatabases, withClient } from "./support/databases";
import { copyMigrations } from "./support/migrations-dir";

const oneLineError = (stderr: string) => {
  const lines = stderr.trim().split("\n");
  expect(lines).toHaveLength(1);
  expect(lines[0]).toMatch(/^error: /);
  expect(stderr).not.toMatch(/\bat .+:\d+:\d+/); // no stack trace
  return lines[0];
};

async function databaseExists(name: string): Promise<boolean> {
  return withClient("postgres", async (c) => (await c.query(`SELECT 1 FROM pg_database WHERE datname = $1`, [name])).rowCount === 1);
}

describe("bad input", () => {
  const dbs = testDatabases("badinput");
  afterAll(() => dbs.drop());

  it("unknown --db: exit 2, names the value", async () => {
    const r = await runCli(["migration:run", "--db", "usersdb"], dbs.env);
    expect(r.code).toBe(2);
    expect(oneLineError(r.stderr)).toBe('error: unknown database "usersdb" (expected one of authdb, apidb, admindb)');
  });

  it("unknown flag: exit 2", async () => {
    const r = await runCli(["migration:show", "--frobnicate"], dbs.env);
    expect(r.code).toBe(2);
    oneLineError(r.stderr);
  });

  it("malformed URL: exit 2, names the database and the variable, not the value", async () => {
    const r = await runCli(["migration:run"], { ...dbs.env, APIDB_URL: "postgres://mig:topsecret@db:notaport/apidb" });
    expect(r.code).toBe(2);
    const line = oneLineError(r.stderr);
    expect(line).toBe("error: apidb: APIDB_URL is not a valid URL (expected postgres://user:password@host:5432/name)");
    expect(r.stdout + r.stderr).not.toContain("topsecret");
  });

  it("wrong password: exit 2 (configuration, as the README says), names the database, hides the password, creates nothing", async () => {
    const bad = new URL(dbs.env.APIDB_URL);
    bad.password = "wrong-pass-123";
    const r = await runCli(["migration:run"], { ...dbs.env, APIDB_URL: bad.toString() });
    expect(r.code).toBe(2);
    expect(oneLineError(r.stderr)).toBe(`error: apidb: password authentication failed for user "${bad.username}"`);
    expect(r.stdout + r.stderr).not.toContain("wrong-pass-123");
    for (const db of DATABASES) expect(await databaseExists(dbs.names[db])).toBe(false);
  });

  it("an unknown role: exit 2 too", async () => {
    const bad = new URL(dbs.env.APIDB_URL);
    bad.username = "no_such_role_16";
    const r = await runCli(["migration:show", "--db", "apidb"], { ...dbs.env, APIDB_URL: bad.toString() });
    expect(r.code).toBe(2);
    expect(oneLineError(r.stderr)).toMatch(/^error: apidb: (password authentication failed for user|role) "no_such_role_16"/);
  });

  it("a password with an unencoded / or @ and /: exit 2 with a hint to URL-encode it, never the password", async () => {
    const u = new URL(dbs.env.APIDB_URL);
    for (const password of ["pa/ss-word-9", "p@ss/word-9"]) {
      const raw = `postgres://${u.username}:${password}@${u.host}/apidb`;
      const r = await runCli(["migration:run"], { ...dbs.env, APIDB_URL: raw });
      expect(r.code).toBe(2);
      const line = oneLineError(r.stderr);
      expect(line).toMatch(/^error: apidb: APIDB_URL is not a valid URL \(expected postgres:\/\/user:password@host:5432\/name\); the user or password holds .*\/.*: URL-encode it \(.*\/ as %2F\)$/);
      if (password.includes("@")) expect(line).toContain("@ as %40");
      expect(line).not.toContain("ss-word");
      expect(line).not.toContain("word-9");
    }
    // Encoded, the same password works.
    const encoded = `postgres://${u.username}:${encodeURIComponent(decodeURIComponent(u.password))}@${u.host}/${dbs.names.apidb}`;
    expect((await runCli(["migration:show", "--db", "apidb"], { ...dbs.env, APIDB_URL: encoded })).code).not.toBe(2);
  });

  it("unreachable host: exit 1, names the database and the address", async () => {
    const r = await runCli(["migration:show"], { ...dbs.env, AUTHDB_URL: "postgres://u:pw-xyz@127.0.0.1:1/authdb" });
    expect(r.code).toBe(1);
    expect(oneLineError(r.stderr)).toBe("error: authdb: cannot connect to 127.0.0.1:1: connection refused");
  });

  it("unknown --to target: exit 2, nothing changed", async () => {
    const r = await runCli(["migration:run", "--to", "NoSuchMigration1234567890123"], dbs.env);
    expect(r.code).toBe(2);
    expect(oneLineError(r.stderr)).toMatch(/^error: unknown migration "NoSuchMigration1234567890123"/);
    const r2 = await runCli(["migration:revert", "--db", "apidb", "--to", "Nope"], dbs.env);
    expect(r2.code).toBe(2);
    expect(oneLineError(r2.stderr)).toBe('error: apidb: unknown migration "Nope" (closest: Init1795519558038)');
  });

  it("unknown command: exit 2", async () => {
    const r = await runCli(["migration:frob"], dbs.env);
    expect(r.code).toBe(2);
    expect(oneLineError(r.stderr)).toBe('error: unknown command "migration:frob"');
  });

  it("missing extension: exit 1 before anything changes in any database", async () => {
    const copy = copyMigrations();
    try {
      copy.add("admindb", "AddGeo", 1795600000000, `CREATE EXTENSION IF NOT EXISTS "no_such_extension"`);
      const r = await runCli(["migration:run"], { ...dbs.env, MIGRATIONS_DIR: copy.root });
      expect(r.code).toBe(1);
      expect(oneLineError(r.stderr)).toBe('error: admindb: extension "no_such_extension" needed by the pending migrations is not available on the server');
      for (const db of DATABASES) expect(await databaseExists(dbs.names[db])).toBe(false);
    } finally {
      copy.remove();
    }
  });
});

describe("the commands", () => {
  const dbs = testDatabases("cli");
  afterAll(() => dbs.drop());

  it("run creates the databases, says which server, migrates; show and generate --check agree", async () => {
    const run = await runCli(["migration:run"], dbs.env);
    expect(run.stderr).toBe("");
    expect(run.code).toBe(0);
    const lines = run.stdout.trim().split("\n");
    expect(lines[0]).toMatch(/^server: authdb=postgres@127\.0\.0\.1:\d+\/authdb_cli_/);
    expect(lines).toEqual(expect.arrayContaining([`authdb: created database`, expect.stringMatching(/^admindb: applied Init\d{13} /)]));

    const again = await runCli(["migration:run"], dbs.env);
    expect(again.code).toBe(0);
    expect(again.stdout).toContain("nothing to migrate");

    const show = await runCli(["migration:show", "--json"], dbs.env);
    expect(show.code).toBe(0);
    const report = JSON.parse(show.stdout);
    expect(report.databases.map((d: { db: string }) => d.db)).toEqual(["authdb", "apidb", "admindb"]);
    expect(report.databases[0].applied).toHaveLength(2);
    expect(report.databases[2].pending).toEqual([]);

    const check = await runCli(["migration:generate", "--check"], dbs.env);
    expect(check.code).toBe(0);
    expect(check.stdout).toContain("authdb: no changes\napidb: no changes\nadmindb: no changes");
  });

  it("generate writes a migration only for the database whose entities differ", async () => {
    const copy = copyMigrations();
    try {
      // The database is one step ahead of the files: the entities now differ from it in apidb only.
      await withClient(dbs.names.apidb, (c) => c.query(`ALTER TABLE profiles ADD COLUMN nickname text`));
      const unnamed = await runCli(["migration:generate", "--", "DropNickname"], { ...dbs.env, MIGRATIONS_DIR: copy.root });
      expect(unnamed.code).toBe(1);
      expect(unnamed.stderr.trim()).toBe("error: apidb: profiles.nickname would be dropped with its values: say --drop profiles.nickname to delete it on purpose");
      expect(fs.readdirSync(`${copy.root}/apidb`).filter((f) => f.includes("DropNickname"))).toEqual([]);
      const r = await runCli(["migration:generate", "DropNickname", "--drop", "profiles.nickname"], { ...dbs.env, MIGRATIONS_DIR: copy.root });
      expect(r.code).toBe(0);
      expect(r.stdout).toMatch(/authdb: no changes\napidb: wrote .*apidb\/\d{13}-DropNickname\.ts \(contract: waits for migration:complete, after the new version is live\)\nadmindb: no changes/);
      const check = await runCli(["migration:generate", "--check", "--db", "apidb"], dbs.env);
      expect(check.code).toBe(1);
      expect(check.stdout).toContain(`ALTER TABLE "profiles" DROP COLUMN "nickname"`);
    } finally {
      await withClient(dbs.names.apidb, (c) => c.query(`ALTER TABLE profiles DROP COLUMN IF EXISTS nickname`));
      copy.remove();
    }
  });

  it("create writes an empty migration for one database", async () => {
    const copy = copyMigrations();
    try {
      const r = await runCli(["migration:create", "BackfillNames", "--db", "apidb"], { ...dbs.env, MIGRATIONS_DIR: copy.root });
      expect(r.code).toBe(0);
      expect(r.stdout).toMatch(/^apidb: created .*apidb\/\d{13}-BackfillNames\.ts$/m);
      const missingDb = await runCli(["migration:create", "X"], dbs.env);
      expect(missingDb.code).toBe(2);
    } finally {
      copy.remove();
    }
  });

  it("the plain TypeORM CLI sees no changes on each data-source file", async () => {
    for (const db of DATABASES) {
      const r = await new Promise<{ code: number | null; out: string }>((resolve) => {
        const child = spawn(process.execPath, [require.resolve("typeorm/cli-ts-node-commonjs"), "migration:generate", `src/migrations/${db}/Check`, "--check", "-d", `src/data-sources/${db}.ts`], {
          cwd: path.resolve(__dirname, ".."),
          env: { PATH: process.env.PATH, ...dbs.env },
        });
        let out = "";
        child.stdout.on("data", (d) => (out += d));
        child.stderr.on("data", (d) => (out += d));
        child.on("close", (code) => resolve({ code, out }));
      });
      expect(r.out).toContain("No changes in database schema were found");
      expect(r.code).toBe(0);
    }
  });

  it("revert --db with --steps, then run again", async () => {
    const r = await runCli(["migration:revert", "--db", "authdb", "--steps", "1"], dbs.env);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/authdb: reverted NormalizeRolesDefault\d{13}/);
    const applied = await withClient(dbs.names.authdb, (c) => readApplied(c));
    expect(applied.map((a) => a.name)).toEqual([expect.stringMatching(/^Init/)]);
    const run = await runCli(["migration:run", "--db", "authdb"], dbs.env);
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/authdb: applied NormalizeRolesDefault/);
  });

  it("reads .env from the working directory; the environment wins over it", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "aimig-dotenv-"));
    try {
      const lines = Object.entries(dbs.env).map(([k, v]) => `${k}=${v}`);
      fs.writeFileSync(path.join(dir, ".env"), [...lines, "MIGRATION_LOCK_TIMEOUT=soon", "MIGRATION_CONNECT_TIMEOUT_MS=soon"].join("\n") + "\n");
      const bad = await runCli(["migration:run"], { MIGRATION_CONNECT_TIMEOUT_MS: "3000" }, { cwd: dir });
      expect(bad.code).toBe(2);
      expect(bad.stderr.trim()).toBe('error: MIGRATION_LOCK_TIMEOUT must be a duration like 5s, 500ms, 15min or 0 (got "soon")');
      const badShow = await runCli(["migration:show", "--db", "apidb"], {}, { cwd: dir });
      expect(badShow.code).toBe(2);
      expect(badShow.stderr.trim()).toBe("error: MIGRATION_CONNECT_TIMEOUT_MS must be a positive integer");
      const ok = await runCli(["migration:show", "--db", "apidb"], { MIGRATION_CONNECT_TIMEOUT_MS: "3000" }, { cwd: dir });
      expect(ok.stderr).toBe("");
      expect(ok.code).toBe(0);
      expect(ok.stdout.split("\n")[0]).toContain(`/${dbs.names.apidb}`); // the databases .env names
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it("revert needs one --db with --steps or --to", async () => {
    const r = await runCli(["migration:revert", "--steps", "2"], dbs.env);
    expect(r.code).toBe(2);
    expect(oneLineError(r.stderr)).toMatch(/needs exactly one --db/);
  });
});
