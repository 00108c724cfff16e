// Linting migrations with squawk (https://squawkhq.com): the SQL each migration's `up` would run is
// recorded without running it (runner/dry-run), written to one .sql file per migration, and squawk
// reads all of a database's files in one run. Findings come back as data; a migration accepts a rule
// for itself, with a reason, by declaring
//
//   lint = { ignore: { "require-concurrent-index-creation": "profiles has 40 rows; reviewed by Aiko" } };
//
// Accepted findings are reported with their reason and do not fail. Nothing here prints, and nothing
// here connects to a database: recording SQL needs a DataSource object, not a connection.
import { spawn } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { DataSource } from "typeorm";
import type { DbName } from "../databases";
import { MigrationError } from "../errors";
import { PROJECT_ROOT } from "../paths";
import { dataSourceOptions } from "../postgres/data-source";
import { captureSql } from "../runner/dry-run";
import { splitStatements, lineStarts, offsetOf, lineIndex, createdTable, targetTable, Statement } from "../postgres/sql-text";
export { splitStatements, targetTable, createdTable, tableKey } from "../postgres/sql-text";
import type { MigrationFile } from "../runner/migration-files";

/**
 * The rule set is squawk's default set for PostgreSQL 15, less the rules below. Each is dropped for a
 * reason that holds for every migration this project runs, so an opt-out per migration would only
 * be noise:
 * - `require-lock-timeout`, `require-statement-timeout` (and their alias `require-timeout-settings`):
 *   our runner sets `lock_timeout` and `statement_timeout` before every migration
 *   (runner/migrator.ts `setTimeouts`, MIGRATION_LOCK_TIMEOUT / MIGRATION_STATEMENT_TIMEOUT, or the
 *   migration's own `timeouts`), so no migration has to.
 * - `prefer-bigint-over-int`, `prefer-bigint-over-smallint`, `prefer-identity`, `prefer-text-field`,
 *   `prefer-timestamp-tz`: preferences about which column types a schema should use. The entities
 *   decide the types, and they must match the schema the services were built on (the legacy
 *   init.sql: `integer` counters, `varchar(255)`, `timestamp` without time zone). They say nothing
 *   about how a migration locks or rewrites an existing table; changing an existing column's type
 *   is caught by `changing-column-type`.
 *
 * Kept, among others: require-concurrent-index-creation, adding-required-field,
 * adding-not-nullable-field, changing-column-type, ban-drop-column, ban-drop-table,
 * constraint-missing-not-valid, adding-foreign-key-constraint, renaming-column/-table,
 * ban-concurrent-index-creation-in-transaction, transaction-nesting (a COMMIT in a migration would
 * end the runner's transaction), ban-char-field (char(n) pads, nearly always a mistake), and
 * prefer-robust-stmts, which squawk applies only to migrations that run outside a transaction:
 * those can fail half way and must then be safe to run again.
 *
 * Transactions: every migration runs in its own transaction unless it declares
 * `transaction = false`, so squawk runs with `--assume-in-transaction`, and the file of a
 * migration without one starts with squawk's `-- squawk-disable-assume-in-transaction`.
 * PostgreSQL 15 (`--pg-version`): e.g. a non-volatile column default needs no table rewrite.
 */
export const EXCLUDED_RULES = [
  "require-lock-timeout",
  "require-statement-timeout",
  "require-timeout-settings",
  "prefer-bigint-over-int",
  "prefer-bigint-over-smallint",
  "prefer-identity",
  "prefer-text-field",
  "prefer-timestamp-tz",
] as const;

export const PG_VERSION = "15.0";

/** Our own rules, beside squawk's. */
export const OWN_RULES = {
  /** `lint` is malformed, or accepts a rule without a reason (never acceptable itself). */
  invalidAcceptance: "invalid-lint-acceptance",
  /** The migration's `up` threw while its SQL was recorded (e.g. it reads the database to decide). */
  sqlNotCaptured: "sql-not-captured",
} as const;

/** What a migration class may declare: per squawk rule, why the finding is safe here. */
export interface MigrationLint {
  ignore?: Record<string, string>;
}

export interface LintFinding {
  db: DbName;
  /** The migration's name, e.g. `RiskyChange1795600000000`. */
  migration: string;
  /** The migration file, relative to the project root. */
  file: string;
  /** squawk's rule name (or one of OWN_RULES). */
  rule: string;
  message: string;
  /** squawk's suggestion, when it has one. */
  help?: string;
  /** 1-based line in the migration's `up` SQL (its statements joined by `;` and a newline). */
  line?: number;
  /** The statement the finding is about, on one line. */
  statement?: string;
}

export interface AcceptedFinding extends LintFinding {
  /** The reason the migration gives in `lint.ignore`. */
  reason: string;
}

/** A `-- squawk-ignore ...` comment in a migration's SQL: squawk honours it, the report shows it. */
export interface IgnoreComment {
  db: DbName;
  migration: string;
  file: string;
  /** `squawk-ignore` covers its line and the next; `squawk-ignore-file` the migration. */
  scope: "line" | "file";
  /** Empty: every rule. */
  rules: string[];
  /** What follows a second `--` on the comment, if anything. */
  reason?: string;
  line: number;
}

export interface LintResult {
  db: DbName;
  /** The migrations linted, oldest first. */
  migrations: string[];
  /** Findings no migration accepted: any one fails the lint. */
  findings: LintFinding[];
  accepted: AcceptedFinding[];
  ignoreComments: IgnoreComment[];
}

/** One migration and the SQL its `up` runs, statement by statement. */
export interface MigrationSql {
  file: MigrationFile;
  sql: string[];
  /** The `up` threw while being recorded: the message. */
  captureError?: string;
}

export interface LintOptions {
  /** squawk's executable; found in node_modules by default (`squawkBinary`). */
  squawk?: string;
  pgVersion?: string;
}

// ---------------------------------------------------------------------------------------------
// Finding squawk

/**
 * The squawk executable installed by the `squawk-cli` package: its platform package's binary
 * (`@squawk-cli/linux-x64/bin/squawk`, an optional dependency), else the package's launcher in
 * node_modules/.bin. Throws a MigrationError saying how to install it.
 *
 * @example squawkBinary() // "/app/node_modules/@squawk-cli/linux-x64/bin/squawk"
 */
export function squawkBinary(): string {
  const exe = process.platform === "win32" ? "squawk.exe" : "squawk";
  try {
    return require.resolve(`@squawk-cli/${process.platform}-${process.arch}/bin/${exe}`);
  } catch {
    const launcher = path.join(PROJECT_ROOT, "node_modules", ".bin", process.platform === "win32" ? "squawk.cmd" : "squawk");
    if (fs.existsSync(launcher)) return launcher;
  }
  throw new MigrationError(`squawk is not installed for ${process.platform}-${process.arch}: run \`npm ci\` (squawk-cli brings its binary as an optional dependency; do not omit optional dependencies)`);
}

interface Exec {
  code: number | null;
  stdout: string;
  stderr: string;
}

function exec(binary: string, args: string[], cwd: string): Promise<Exec> {
  return new Promise((resolve, reject) => {
    const child = spawn(binary, args, { cwd, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}

const versions = new Map<string, Promise<string>>();

/**
 * squawk's version, e.g. "2.66.0".
 *
 * @example await squawkVersion() // "2.66.0"
 */
export function squawkVersion(binary = squawkBinary()): Promise<string> {
  let version = versions.get(binary);
  if (!version) {
    version = exec(binary, ["--version"], os.tmpdir()).then((r) => r.stdout.trim().replace(/^squawk\s+/, ""));
    versions.set(binary, version);
  }
  return version;
}

// ---------------------------------------------------------------------------------------------
// Recording the SQL

/**
 * A DataSource for recording SQL only: never initialized, so it never connects (captureSql asks it
 * for a query runner whose `query` it replaces). Serves databases that do not exist yet.
 */
export function offlineDataSource(db: DbName): DataSource {
  return new DataSource(dataSourceOptions(db, `postgres://lint@localhost/${db}`));
}

/**
 * The SQL of each migration's `up`, recorded, not run. A migration whose `up` throws while being
 * recorded gets `captureError` (it becomes a `sql-not-captured` finding).
 *
 * @example await migrationSql(files, state.dataSource) // [{ file, sql: ["CREATE INDEX ..."] }]
 */
export async function migrationSql(files: MigrationFile[], dataSource: DataSource): Promise<MigrationSql[]> {
  const out: MigrationSql[] = [];
  for (const file of files) {
    void file.migration; // a file that does not load is the loader's error (checkLoadable), not a finding
    try {
      out.push({ file, sql: await captureSql(dataSource, file, "up") });
    } catch (error) {
      out.push({ file, sql: [], captureError: String((error as Error)?.message ?? error).split("\n")[0] });
    }
  }
  return out;
}

const oneLine = (sql: string, max = 160) => {
  const flat = sql.replace(/\s+/g, " ").trim();
  return flat.length > max ? `${flat.slice(0, max - 1)}…` : flat;
};

// ---------------------------------------------------------------------------------------------
// Acceptances

interface Acceptance {
  ignore: Map<string, string>;
  problems: string[];
}

/** The `lint` a migration instance declares, checked: every accepted rule needs a reason. */
export function acceptanceOf(file: MigrationFile): Acceptance {
  const declared = (file.migration as { lint?: unknown }).lint;
  const out: Acceptance = { ignore: new Map(), problems: [] };
  if (declared === undefined) return out;
  const shape = 'lint must be { ignore: { "<squawk rule>": "<why it is safe here>" } }';
  if (typeof declared !== "object" || declared === null || Array.isArray(declared)) return { ...out, problems: [shape] };
  const { ignore, ...rest } = declared as { ignore?: unknown };
  if (Object.keys(rest).length) out.problems.push(`${shape}; unknown key ${Object.keys(rest).map((k) => JSON.stringify(k)).join(", ")}`);
  if (ignore === undefined) return out;
  if (typeof ignore !== "object" || ignore === null || Array.isArray(ignore)) return { ...out, problems: [...out.problems, shape] };
  for (const [rule, reason] of Object.entries(ignore)) {
    if (rule === OWN_RULES.invalidAcceptance) out.problems.push(`lint.ignore cannot accept ${rule}`);
    else if (typeof reason !== "string" || !reason.trim()) out.problems.push(`lint.ignore["${rule}"] has no reason: give a non-empty string saying why it is safe here`);
    else out.ignore.set(rule, reason.trim());
  }
  return out;
}

/** The `-- squawk-ignore[-file] rule, ... [-- reason]` comments of a migration's SQL text. */
function ignoreCommentsIn(text: string): Array<Omit<IgnoreComment, "db" | "migration" | "file">> {
  const lineAt = lineIndex(text);
  const out: Array<Omit<IgnoreComment, "db" | "migration" | "file">> = [];
  for (const m of text.matchAll(/(?:--|\/\*)\s*squawk-ignore(-file)?\b([^\n]*)/g)) {
    const body = m[2].replace(/\*\/.*$/, "");
    const [names, ...why] = body.split("--");
    const reason = why.join("--").trim();
    out.push({
      scope: m[1] ? "file" : "line",
      rules: names.split(",").map((r) => r.trim()).filter(Boolean),
      ...(reason ? { reason } : {}),
      line: lineAt(m.index!) + 1,
    });
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Linting

interface SquawkViolation {
  file: string;
  line: number;
  column: number;
  level: string;
  message: string;
  help: string | null;
  rule_name: string;
}

const NO_TRANSACTION_HEADER = "-- squawk-disable-assume-in-transaction";

interface Written {
  entry: MigrationSql;
  path: string;
  /** Lines before the migration's own SQL. */
  header: number;
  text: string;
  statements: Statement[];
  lineStarts: number[];
}

/** The text squawk reads for one migration: its statements, each ended by `;` on its last line, or after it when that line has a comment. */
function sqlText(statements: string[]): string {
  return statements
    .map((s) => s.trim().replace(/;\s*$/, ""))
    .filter(Boolean)
    .map((s) => (/--/.test(s.slice(s.lastIndexOf("\n") + 1)) ? `${s}\n;` : `${s};`))
    .join("\n");
}

/** Memory-backed, where the machine has it: creating thousands of small files there is 15× faster than on disk. */
const SHARED_MEMORY = "/dev/shm";

/**
 * Where the lint's files go: shared memory when it is there, writable and has ample room for them
 * (a container's is 64 MB by default), else the temp directory.
 */
function scratchRoot(entries: MigrationSql[]): string {
  try {
    const bytes = entries.reduce((n, e) => n + e.sql.reduce((m, s) => m + s.length * 4 + 1, 256), 0);
    const { bavail, bsize } = fs.statfsSync(SHARED_MEMORY);
    fs.accessSync(SHARED_MEMORY, fs.constants.W_OK);
    if (bavail * bsize > 4 * bytes + 16 * 1048576) return SHARED_MEMORY;
  } catch {
    /* no shared memory here */
  }
  return os.tmpdir();
}

/**
 * Lints recorded SQL: squawk once over all the migrations' files, then our filters and the
 * migrations' acceptances. `db` only labels the findings.
 *
 * @example
 *   const result = await lintSql("apidb", await migrationSql(pending, dataSource));
 *   if (result.findings.length) ... // each: { db, migration, file, rule, message, line, statement }
 */
export async function lintSql(db: DbName, entries: MigrationSql[], options: LintOptions = {}): Promise<LintResult> {
  const result: LintResult = { db, migrations: entries.map((e) => e.file.name), findings: [], accepted: [], ignoreComments: [] };
  const acceptances = new Map(entries.map((e) => [e.file.name, acceptanceOf(e.file)]));
  const where = (e: MigrationSql) => ({ db, migration: e.file.name, file: e.file.file });
  const raw: LintFinding[] = [];
  for (const e of entries) {
    for (const problem of acceptances.get(e.file.name)!.problems) raw.push({ ...where(e), rule: OWN_RULES.invalidAcceptance, message: problem });
    if (e.captureError) raw.push({ ...where(e), rule: OWN_RULES.sqlNotCaptured, message: `its up threw while its SQL was recorded (lint sees no SQL of it): ${e.captureError}` });
  }

  const toLint = entries.filter((e) => !e.captureError && e.sql.length);
  if (toLint.length) {
    const dir = fs.mkdtempSync(path.join(scratchRoot(toLint), "aimig-lint-"));
    try {
      const written = toLint.map((entry, i): Written => {
        const noTransaction = (entry.file.migration as { transaction?: boolean }).transaction === false;
        const body = sqlText(entry.sql);
        const text = noTransaction ? `${NO_TRANSACTION_HEADER}\n${body}\n` : `${body}\n`;
        const file = path.join(dir, `${String(i).padStart(4, "0")}-${entry.file.name}.sql`);
        fs.writeFileSync(file, text);
        // Split only when squawk reports on the file: with thousands of migrations most have nothing to report.
        let split: { statements: Statement[]; lineStarts: number[] } | undefined;
        const parts = () => (split ??= { statements: splitStatements(text), lineStarts: lineStarts(text) });
        return { entry, path: file, header: noTransaction ? 1 : 0, text, get statements() { return parts().statements; }, get lineStarts() { return parts().lineStarts; } };
      });
      for (const w of written) {
        for (const c of ignoreCommentsIn(w.text)) result.ignoreComments.push({ ...where(w.entry), ...c, line: c.line - w.header });
      }
      const violations = await runSquawk(db, written.map((w) => w.path), dir, options);
      const byPath = new Map(written.map((w) => [w.path, w]));
      for (const v of violations) {
        const w = byPath.get(path.resolve(dir, v.file));
        if (!w) throw new MigrationError(`squawk reported a file it was not given: ${v.file}`, db);
        const at = offsetOf(w.text, w.lineStarts, v.line, v.column);
        const index = w.statements.findIndex((s) => at >= s.start && at <= s.end);
        const statement = index >= 0 ? w.statements[index] : undefined;
        if (statement && EXISTING_TABLE_RULES.has(v.rule_name) && onTableCreatedEarlier(w.statements, index)) continue;
        raw.push({
          ...where(w.entry),
          rule: v.rule_name,
          message: v.message,
          ...(v.help ? { help: v.help } : {}),
          line: v.line - w.header + 1,
          ...(statement ? { statement: oneLine(statement.text) } : {}),
        });
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }

  for (const finding of raw) {
    const reason = finding.rule === OWN_RULES.invalidAcceptance ? undefined : acceptances.get(finding.migration)!.ignore.get(finding.rule);
    if (reason) result.accepted.push({ ...finding, reason });
    else result.findings.push(finding);
  }
  return result;
}

/**
 * The rules about harm to an existing table: its readers and writers blocked, its rows rewritten or
 * scanned, its clients broken. On a table the same migration created (no rows, no readers yet) they
 * do not apply, and their findings there are dropped. Every other rule (prefer-robust-stmts,
 * transaction rules, syntax errors, rules squawk adds later) stands wherever it fires.
 */
export const EXISTING_TABLE_RULES: ReadonlySet<string> = new Set([
  "require-concurrent-index-creation",
  "require-concurrent-index-deletion",
  "require-concurrent-reindex",
  "adding-required-field",
  "adding-not-nullable-field",
  "adding-field-with-default",
  "adding-serial-primary-key-field",
  "adding-foreign-key-constraint",
  "constraint-missing-not-valid",
  "disallowed-unique-constraint",
  "changing-column-type",
  "ban-drop-column",
  "ban-drop-table",
  "ban-drop-not-null",
  "ban-truncate-cascade",
  "renaming-column",
  "renaming-table",
  "prefer-repack",
]);

/** Whether statement `index` acts on a table an earlier statement of the same migration created. */
function onTableCreatedEarlier(statements: Statement[], index: number): boolean {
  const target = targetTable(statements[index].text);
  if (!target) return false;
  return statements.slice(0, index).some((s) => createdTable(s.text) === target);
}

async function runSquawk(db: DbName, files: string[], dir: string, options: LintOptions): Promise<SquawkViolation[]> {
  const binary = options.squawk ?? squawkBinary();
  // Our own (empty) config, so no .squawk.toml of the machine changes the rule set.
  const config = path.join(dir, ".squawk.toml");
  fs.writeFileSync(config, "");
  const args = [
    "--reporter", "json",
    "--config", config,
    "--pg-version", options.pgVersion ?? PG_VERSION,
    "--assume-in-transaction",
    "--exclude", EXCLUDED_RULES.join(","),
    ...files,
  ];
  let r: Exec;
  try {
    r = await exec(binary, args, dir);
  } catch (error) {
    throw new MigrationError(`cannot run squawk (${binary}): ${(error as Error).message}`, db);
  }
  // squawk exits 0 without findings, 1 with findings; anything else is squawk failing.
  if (r.code === 0 || r.code === 1) {
    try {
      const parsed = JSON.parse(r.stdout || "[]") as SquawkViolation[];
      if (Array.isArray(parsed)) return parsed;
    } catch {
      /* below */
    }
  }
  const why = (r.stderr || r.stdout).split("\n").find((l) => l.trim()) ?? `exit code ${r.code}`;
  throw new MigrationError(`squawk failed: ${why.trim()}`, db);
}

/**
 * Lints these migrations of one database: records each one's `up` SQL on `dataSource` (an
 * uninitialized one is fine: nothing connects; by default an offline one), then `lintSql`.
 * What a deploy plan calls for the migrations it will apply.
 *
 * @example
 *   const result = await lintFiles("apidb", state.pending, { dataSource: state.dataSource });
 *   const failure = lintFailure(result);
 *   if (failure) throw new MigrationError(failure, "apidb");
 */
export async function lintFiles(db: DbName, files: MigrationFile[], options: LintOptions & { dataSource?: DataSource } = {}): Promise<LintResult> {
  const entries = await migrationSql(files, options.dataSource ?? offlineDataSource(db));
  return lintSql(db, entries, options);
}

/** One line for a lint that fails (undefined when every finding is accepted), naming the first finding. */
export function lintFailure(result: LintResult): string | undefined {
  const [first, ...more] = result.findings;
  if (!first) return undefined;
  const others = more.length ? ` (and ${more.length} more finding${more.length === 1 ? "" : "s"}: npm run migration:lint -- --db ${result.db})` : "";
  const hint = first.rule === OWN_RULES.invalidAcceptance ? "" : `; fix it, or accept it in the migration: lint = { ignore: { "${first.rule}": "<why it is safe here>" } }`;
  return `${first.file}: ${first.rule}: ${first.message}${others}${hint}`;
}

/**
 * The deploy plan's check: lints the migrations a run will apply and throws one line (a
 * MigrationError naming the database, the file and the first finding) when any finding is not
 * accepted. Returns the result, accepted findings included, when the lint passes.
 *
 * @example await checkLint(state.db, todo, state.dataSource) // in checkPlan, after checkLoadable
 */
export async function checkLint(db: DbName, files: MigrationFile[], dataSource?: DataSource, options: LintOptions = {}): Promise<LintResult> {
  const result = await lintFiles(db, files, { ...options, dataSource });
  const failure = lintFailure(result);
  if (failure) throw new MigrationError(failure, db);
  return result;
}
