// The README's JSON report table against real reports: every field a report has is documented, and
// every documented field is there (present even when null: `failure.undoFailed`). Reports come from
// the real command line on real databases, across the outcomes that shape them (applied, dry run,
// nothing to do, failed with an undo that failed too, failed without a backup).
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { runCli } from "./support/cli";
import { testDatabases } from "./support/databases";
import { copyMigrations, MigrationsCopy } from "./support/migrations-dir";
import { backticked, README, tableRows } from "./support/readme";

interface Field {
  name: string;
  /** Written `name?`: present only in some reports. */
  optional: boolean;
  children: Field[];
}

/** The keys of a `{a, b: {...}, c}` token, one level deep. */
function braceKeys(token: string): string[] {
  const inner = token.trim().replace(/^\{|\}$/g, "");
  const keys: string[] = [];
  let depth = 0;
  let current = "";
  for (const ch of inner + ",") {
    if (ch === "{") depth++;
    if (ch === "}") depth--;
    if (ch === "," && depth === 0) {
      keys.push(current.split(":")[0].trim().replace(/\[\]$/, ""));
      current = "";
    } else current += ch;
  }
  return keys.filter(Boolean).map((k) => k.replace(/\[\]$/, ""));
}

const fieldName = (token: string) => token.split(":")[0].trim().replace(/\?$/, "").replace(/\[\]$/, "");
const isField = (token: string) => /^[a-zA-Z]\w*(\[\])?\??(: .*)?$/.test(token) && !/^(null|true|false)$/.test(token);
const field = (token: string): Field => ({ name: fieldName(token), optional: /\?$/.test(token.split(":")[0].trim()), children: [] });

/**
 * A README cell of fields as a tree: `a`, `b` (`c`, `d`) and `e[]` of `{f, g}` give b's children
 * c and d, e's f and g; after `x[]`:, the rest are x's children.
 */
function parseFields(cell: string): Field[] {
  const top: Field[] = [];
  let target = top;
  let last: Field | undefined;
  let depth = 0;
  const parts = cell.split(/(`[^`]*`|\(|\))/).filter((p) => p !== "");
  const stack: Field[][] = [];
  for (const part of parts) {
    if (part === "(") {
      stack.push(target);
      target = last ? last.children : [];
      depth++;
      continue;
    }
    if (part === ")") {
      target = stack.pop() ?? top;
      depth--;
      continue;
    }
    if (part.startsWith("`")) {
      const token = part.slice(1, -1);
      if (token.startsWith("{")) {
        if (!last) continue;
        const alternative = last.children.length > 0; // `{a, b}` or `{c: true}`: each key in some reports only
        for (const k of braceKeys(token)) last.children.push(field(k));
        if (alternative) for (const c of last.children) c.optional = true;
        continue;
      }
      if (!isField(token)) continue;
      const f = field(token);
      if (!target.some((t) => t.name === f.name)) target.push(f);
      last = target.find((t) => t.name === f.name);
      continue;
    }
    if (depth === 0 && /^:/.test(part.trim()) && last) target = last.children; // `databases[]`: `db`, ...
  }
  return top;
}

/** Every key of the objects in `values` (objects, or arrays of objects), with their values. */
function objectsIn(values: unknown[]): Array<Record<string, unknown>> {
  return values.flatMap((v) => (Array.isArray(v) ? v : [v])).filter((v): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v));
}

/** Differences between documented fields and the union of the reports' keys, recursively where the values are objects. */
function compare(fields: Field[], reports: unknown[], where: string): string[] {
  const objects = objectsIn(reports);
  if (!objects.length) return [];
  const out: string[] = [];
  const real = new Set(objects.flatMap((o) => Object.keys(o)));
  const documented = new Set(fields.map((f) => f.name));
  // A field in every report must be documented as always there; one in only some, as `name?`.
  for (const f of fields) if (!f.optional && real.has(f.name) && objects.some((o) => !(f.name in o))) out.push(`${where}${f.name}: missing from some reports, not documented as \`${f.name}?\``);
  for (const k of real) if (!documented.has(k)) out.push(`${where}${k}: in the report, not in the README`);
  for (const f of fields) if (!f.optional && !real.has(f.name)) out.push(`${where}${f.name}: in the README, in no report`);
  for (const f of fields) {
    const values = objects.map((o) => o[f.name]).filter((v) => v !== undefined && v !== null);
    if (f.children.length && objectsIn(values).length) out.push(...compare(f.children, values, `${where}${f.name}.`));
  }
  return out;
}

const jsonTable = new Map(tableRows(README, "command", "fields").filter((r) => r.length === 2 && r[0].startsWith("`")).map(([command, fields]) => [backticked(command)[0], fields]));

describe("the README's JSON report fields are the real reports' fields", () => {
  const dbs = testDatabases("jsonrep");
  let copy: MigrationsCopy;
  const reports = new Map<string, unknown[]>();
  let cwd: string;
  const json = async (label: string, args: string[], env: Record<string, string> = dbs.env, expectCode = 0) => {
    const r = await runCli([...args, "--json"], env, { cwd });
    expect({ label, code: r.code, stderr: r.code === expectCode ? "" : r.stderr }).toEqual({ label, code: expectCode, stderr: "" });
    const report = JSON.parse(r.stdout);
    reports.set(label, [...(reports.get(label) ?? []), report]);
    return report;
  };

  beforeAll(async () => {
    cwd = fs.mkdtempSync(path.join(os.tmpdir(), "aimig-json-"));
    copy = copyMigrations();
    await json("migration:run", ["migration:run", "--to", "Init"]);
    await json("migration:run", ["migration:run", "--dry-run"]);
    await json("migration:run", ["migration:run"]);
    await json("migration:run", ["migration:run"]);
    await json("migration:show", ["migration:show"]);
    await json("migration:check", ["migration:check"]);
    await json("migration:lint", ["migration:lint", "--all"]);
    await json("db:backup", ["db:backup", "--db", "apidb"]);
    fs.writeFileSync(path.join(cwd, ".env.a"), Object.entries(dbs.env).map(([k, v]) => `${k}=${v}`).join("\n") + "\n");
    fs.writeFileSync(path.join(cwd, ".env.down"), "DATABASE_URL=postgres://u:pw@127.0.0.1:1/postgres\nMIGRATION_CONNECT_TIMEOUT_MS=3000\n");
    await json("migration:show --env a --env b", ["migration:show", "--env", "a", "--env", "down", "--allow-unreachable"], {});
    await json("migration:revert", ["migration:revert"]);
    await json("migration:revert", ["migration:revert", "--db", "authdb", "--steps", "1", "--dry-run"]);
    // A failed run: authdb's new migration applies, apidb's fails, and undoing authdb's fails too.
    copy.add("authdb", "AddJsonT", 1795600000001, "CREATE TABLE json_t (id int)", "DROP TABLE no_such_table_json");
    copy.add("apidb", "Boom", 1795600000002, "SELECT 1/0");
    const failing = { ...dbs.env, MIGRATIONS_DIR: copy.root };
    const failed = await json("migration:run", ["migration:run"], failing, 1);
    expect(failed.failure.undoFailed).toMatch(/undoing AddJsonT1795600000001 failed/);
    const noBackup = await json("migration:run", ["migration:run", "--no-backup"], failing, 1);
    expect(noBackup.failure.restoreCommand).toBeNull();
  }, 240_000);

  afterAll(async () => {
    copy?.remove();
    fs.rmSync(cwd, { recursive: true, force: true });
    await dbs.drop();
  });

  it.each(["migration:run", "migration:revert", "migration:show", "migration:check", "migration:lint", "db:backup", "migration:show --env a --env b"])("%s", (command) => {
    const documented = jsonTable.get(command);
    expect(documented).toBeDefined();
    const real = reports.get(command)!;
    expect(compare(parseFields(documented!), real, "")).toEqual([]);
  });

  it("a failure always has every documented field, null where it does not apply", () => {
    const failures = (reports.get("migration:run") as Array<{ failure?: Record<string, unknown> }>).map((r) => r.failure).filter(Boolean);
    expect(failures).toHaveLength(2);
    for (const f of failures) expect(Object.keys(f!).sort()).toEqual(["databases", "db", "message", "migration", "restoreCommand", "undoFailed", "undone"]);
  });
});
