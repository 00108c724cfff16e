// Backup retention, counted per database: the newest N runs holding each database stay, so the
// newest backup of every database always stays, whatever --db a run had; removals are said.
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { pruneBackups } from "../src/backup/backup";
import { runCli } from "./support/cli";
import { testDatabases } from "./support/databases";

/** A run directory with a manifest naming `dbs`, created `minutesAgo`. */
function fakeRun(dir: string, id: string, dbs: string[], minutesAgo: number): void {
  fs.mkdirSync(path.join(dir, id), { recursive: true });
  const createdAt = new Date(Date.now() - minutesAgo * 60_000).toISOString();
  const databases = dbs.map((db) => ({ db, database: db, file: `${db}.dump`, sha256: "", size: 0, serverVersion: "15", applied: [], tables: 0, durationMs: 0 }));
  fs.writeFileSync(path.join(dir, id, "manifest.json"), JSON.stringify({ runId: id, createdAt, reason: "test", databases }));
}

describe("pruneBackups", () => {
  let dir: string;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "aimig-retention-"));
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it("counts per database: runs of admindb alone never push out the only backup of authdb and apidb", () => {
    fakeRun(dir, "r1-all", ["authdb", "apidb", "admindb"], 50);
    for (let i = 2; i <= 6; i++) fakeRun(dir, `r${i}-admin`, ["admindb"], 50 - i);
    const removed = pruneBackups(dir, 2);
    expect(removed.map((r) => r.runId).sort()).toEqual(["r2-admin", "r3-admin", "r4-admin"]);
    expect(fs.readdirSync(dir).sort()).toEqual(["r1-all", "r5-admin", "r6-admin"]);
  });

  it("keeps the newest N of each database and removes a run only when no database needs it", () => {
    fakeRun(dir, "a", ["authdb", "apidb"], 40);
    fakeRun(dir, "b", ["apidb"], 30);
    fakeRun(dir, "c", ["authdb"], 20);
    fakeRun(dir, "d", ["apidb"], 10);
    // Newest 1 each: authdb -> c, apidb -> d.
    expect(pruneBackups(dir, 1).map((r) => ({ runId: r.runId, dbs: r.dbs }))).toEqual([
      { runId: "b", dbs: ["apidb"] },
      { runId: "a", dbs: ["authdb", "apidb"] },
    ]);
    expect(fs.readdirSync(dir).sort()).toEqual(["c", "d"]);
  });

  it("removes an empty run (a manifest with no database) and never counts it; leaves what is not ours", () => {
    fakeRun(dir, "old", ["authdb"], 30);
    fakeRun(dir, "empty", [], 5);
    fs.mkdirSync(path.join(dir, "not-a-run"));
    expect(pruneBackups(dir, 1).map((r) => r.runId)).toEqual(["empty"]);
    expect(fs.readdirSync(dir).sort()).toEqual(["not-a-run", "old"]);
  });
});

describe("db:backup --keep", () => {
  const dbs = testDatabases("retain");
  beforeAll(async () => {
    expect((await runCli(["migration:run", "--no-backup"], dbs.env)).code).toBe(0);
  });
  afterAll(() => dbs.drop());

  it("--keep 1 --db admindb keeps the newest backup of authdb and apidb, and says what it removed", async () => {
    const all = JSON.parse((await runCli(["db:backup", "--json"], dbs.env)).stdout);
    const first = JSON.parse((await runCli(["db:backup", "--db", "admindb", "--json"], dbs.env)).stdout);
    const second = await runCli(["db:backup", "--db", "admindb", "--keep", "1"], dbs.env);
    expect(second.code).toBe(0);
    expect(second.stdout).toContain(`removed old backup ${first.runId} (admindb: the newest 1 of each are kept)`);
    // Run ids of one second do not sort by time (a random suffix): the remaining runs are compared as a set.
    const runs = fs.readdirSync(dbs.env.MIGRATION_BACKUP_DIR);
    expect(runs).toHaveLength(2);
    expect(runs).toContain(all.runId);
    expect(runs).not.toContain(first.runId);
  });
});
