// migration:run lints what it is about to apply: a finding no migration accepts stops the run
// before any change, --dry-run shows it, --unsafe deploys it with a warning.
import { runCli } from "./support/cli";
import { withClient } from "./support/databases";
import { migratedWithCopy } from "./support/migrations-dir";

describe("the deploy's lint", () => {
  const { dbs, copy, env } = migratedWithCopy("deploylint");
  const applied = async () => withClient(dbs.names.apidb, async (c) => (await c.query(`SELECT name FROM migrations ORDER BY id`)).rows.map((r) => r.name));

  it("refuses a plain index on an existing table before any change; --dry-run shows it; --unsafe deploys it", async () => {
    copy().add("apidb", "IndexName", 1795900000001, `CREATE INDEX idx_profiles_name ON profiles (name)`, `DROP INDEX idx_profiles_name`);
    const before = await applied();
    const r = await runCli(["migration:run"], env());
    expect(r.code).toBe(1);
    expect(r.stderr.trim()).toMatch(/^error: apidb: .*1795900000001-IndexName\.ts: require-concurrent-index-creation: .*lint = \{ ignore: \{ "require-concurrent-index-creation": "<why it is safe here>" \} \}, or deploy with --unsafe$/);
    expect(await applied()).toEqual(before);

    const dry = await runCli(["migration:run", "--dry-run"], env());
    expect(dry.code).toBe(0);
    expect(dry.stdout).toMatch(/apidb: lint: .*1795900000001-IndexName\.ts: require-concurrent-index-creation: /);

    const unsafe = await runCli(["migration:run", "--unsafe"], env());
    expect(unsafe.code).toBe(0);
    expect(unsafe.stderr).toContain("warning: --unsafe: migrations with lint findings they do not accept are deployed");
    expect(unsafe.stderr).toMatch(/warning: apidb: --unsafe: deploying 1 lint finding no migration accepts \(first: .*IndexName\.ts: require-concurrent-index-creation\)/);
    expect(await applied()).toEqual([...before, "IndexName1795900000001"]);
  });
});
