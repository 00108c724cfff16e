// An entity edited without generating a migration: check finds it and shows the SQL. The edit is
// made the way a developer makes it, by applying TypeORM's decorators to the entity class (kept in
// this file so no other suite sees the edited entity).
import { Column } from "typeorm";
import { checkDatabases } from "../src/commands/check";
import { runMigrations } from "../src/commands/run";
import { Profile } from "../src/entities/apidb";
import { DATABASES } from "../src/databases";
import { DEFAULT_TIMEOUTS } from "../src/runner/migrator";
import { testDatabases } from "./support/databases";

describe("entity drift", () => {
  const dbs = testDatabases("entity");
  beforeAll(async () => {
    const run = await runMigrations(dbs.config, { dbs: [...DATABASES], timeouts: DEFAULT_TIMEOUTS, lockTimeoutMs: 10_000, backup: false });
    expect(run.status).toBe("applied");
  });
  afterAll(() => dbs.drop());

  it("is clean before the edit", async () => {
    expect((await checkDatabases(dbs.config, ["apidb"])).ok).toBe(true);
  });

  it("an edited entity without a migration: not ok, with the SQL generate would write", async () => {
    Column("date", { name: "birth_date", nullable: true })(Profile.prototype, "birthDate");
    const report = await checkDatabases(dbs.config, ["apidb"]);
    expect(report.ok).toBe(false);
    expect(report.databases[0].entityDrift).toEqual([`ALTER TABLE "profiles" ADD "birth_date" date`]);
    expect(report.databases[0].schemaDrift).toEqual([]);
    expect(report.databases[0].historyDrift).toEqual([]);
  });
});
