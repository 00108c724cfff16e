// One table of settings (src/config.ts SETTINGS), mirrored by the configuration tables of both
// guides, and nothing else in src/ or scripts/ reads a setting from the environment on its own.
import * as fs from "fs";
import * as path from "path";
import { backupKeepFrom, lockWaitMsFrom, setting, SETTINGS, timeoutsFrom, type Setting } from "../src/config";
import { backticked, README, README_JA, ROOT, tableRows } from "./support/readme";

const documented = (SETTINGS as readonly Setting[]).filter((s) => !s.hidden);

/** A guide's configuration table: per row, its variables and the values its default cell names. */
function configurationTable(text: string, firstHeader: string): Array<{ variables: string[]; defaults: string[] }> {
  return tableRows(text, firstHeader).map(([names, , defaults]) => ({
    variables: backticked(names).map((n) => n.split("=")[0]),
    defaults: backticked(defaults ?? ""),
  }));
}

describe.each([
  ["README.md", README, "variable"],
  ["README.ja.md", README_JA, "変数"],
])("%s's configuration table", (_name, text, header) => {
  const table = configurationTable(text, header);

  it("lists exactly the settings src/config.ts reads", () => {
    expect(table.flatMap((r) => r.variables).sort()).toEqual(documented.map((s) => s.variable).sort());
  });

  it("gives each setting the default src/config.ts has", () => {
    for (const row of table) {
      const expected = [...new Set(row.variables.map((v) => documented.find((s) => s.variable === v)?.default).filter((d): d is string => d !== undefined))];
      expect({ variables: row.variables, defaults: row.defaults }).toEqual({ variables: row.variables, defaults: expected });
    }
  });
});

describe("settings are read in src/config.ts only", () => {
  const sources = (dir: string): string[] =>
    fs.readdirSync(path.join(ROOT, dir), { withFileTypes: true }).flatMap((e) =>
      e.isDirectory() ? sources(path.join(dir, e.name)) : e.name.endsWith(".ts") ? [path.join(dir, e.name)] : []);

  it("no other module of src/ or scripts/ reads a variable from process.env (PATH and jest's own aside)", () => {
    const reads: string[] = [];
    for (const file of [...sources("src"), ...sources("scripts")]) {
      if (file === path.join("src", "config.ts")) continue;
      const text = fs.readFileSync(path.join(ROOT, file), "utf8");
      for (const m of text.matchAll(/process\.env(?:\.(\w+)|\[["'](\w+)["']\])/g)) {
        const name = m[1] ?? m[2];
        if (name !== "PATH" && name !== "JEST_WORKER_ID") reads.push(`${file}: ${name}`);
      }
    }
    expect(reads).toEqual([]);
  });

  it("every variable src/config.ts names is in its table", () => {
    const text = fs.readFileSync(path.join(ROOT, "src", "config.ts"), "utf8");
    const named = new Set([...text.matchAll(/env\.([A-Z][A-Z0-9_]+)|"([A-Z][A-Z0-9_]*(?:_URL|_NAME|_MS|_DIR|_KEEP|_TIMEOUT|_BUDGET|_DATABASE|_COMPRESSION|PASSWORD))"/g)].map((m) => m[1] ?? m[2]));
    const known = new Set(SETTINGS.map((s) => s.variable));
    expect([...named].filter((n) => !known.has(n as never))).toEqual([]);
  });

  it("defaults come from the table, and bad values are one line naming the variable", () => {
    expect(timeoutsFrom({})).toEqual({ lockTimeout: "100ms", statementTimeout: "15min", lockRetryBudget: "5min" });
    expect(lockWaitMsFrom({})).toBe(120_000);
    expect(lockWaitMsFrom({ MIGRATION_LOCK_WAIT_MS: "0" })).toBe(0);
    expect(backupKeepFrom({})).toBe(10);
    expect(backupKeepFrom({ MIGRATION_BACKUP_KEEP: "3" }, "5")).toBe(5);
    expect(setting({ MIGRATION_LOCK_DATABASE: "" }, "MIGRATION_LOCK_DATABASE")).toBe("postgres");
    expect(() => timeoutsFrom({ MIGRATION_STATEMENT_TIMEOUT: "soon" })).toThrow('MIGRATION_STATEMENT_TIMEOUT must be a duration like 5s, 500ms, 15min or 0 (got "soon")');
    expect(() => lockWaitMsFrom({ MIGRATION_LOCK_WAIT_MS: "-1" })).toThrow("MIGRATION_LOCK_WAIT_MS must be a whole number of milliseconds");
    expect(() => backupKeepFrom({ MIGRATION_BACKUP_KEEP: "0" })).toThrow(/MIGRATION_BACKUP_KEEP/);
  });
});
