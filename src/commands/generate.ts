// migration:generate: TypeORM's diff of entities against each (up-to-date) database, written as a
// timestamped migration only where there is a difference. --check writes nothing and reports.
// The diff is made online-safe for tables that already exist (src/safety/online-ddl.ts): indexes
// built CONCURRENTLY in a migration of their own with `transaction = false`, constraints added NOT
// VALID and validated in a later one, column type changes in place instead of DROP + ADD. The
// migrations of one change share its name, with consecutive timestamps (AddX1795600000000,
// AddX1795600000001, ...). What could still lose or refuse data comes back as warnings, one line each.
import * as fs from "fs";
import * as path from "path";
import type { Config } from "../config";
import type { DbName } from "../databases";
import { MigrationError } from "../errors";
import { renderEvolveMigrations } from "../evolve";
import { migrationsDir } from "../runner/migration-files";
import { checkExists, closeStates, readStates } from "../deploy/plan";
import { loadSqlParser } from "../postgres/sql-parse";
import type { ManagedIndex } from "../schema/indexes";
import { checkMigrationName, renderMigration } from "../schema/render-migration";
import { parseDrop, parseRename } from "../safety/named-changes";
import { Notice, OnlinePlan, Part, Phase, PHASES } from "../safety/online-ddl";
import { assignNamed, DbPlan, planDatabase } from "./generate-plan";

export interface GeneratedMigration {
  /** TypeORM's migration name: class name + 13-digit timestamp, e.g. `AddX1795600000001`. */
  name: string;
  /** The file written, relative to the working directory (none with --check). */
  file?: string;
  /** false: the migration declares `transaction = false` and runs outside a transaction. */
  transaction: boolean;
  /** Expand/contract: `expand` runs in migration:run, `contract` waits for migration:complete. */
  phase?: "expand" | "contract";
  up: string[];
  down: string[];
}

export interface DbGenerateResult {
  db: DbName;
  changed: boolean;
  /** Every up statement written (or, with --check, that would be), in the order they run. */
  up: string[];
  /** The first file written. */
  file?: string;
  /** Every file written, in the order they run: one, or up to three when the change is split. */
  files: string[];
  migrations: GeneratedMigration[];
  /** One line per column or table to check before running: narrowing casts, dropped data. */
  warnings: string[];
  /** Indexes owned by migrations (not declarable in an entity) that generate left alone. */
  managed: ManagedIndex[];
  /** Indexes the entities ask for that an existing index already is: not written. */
  duplicates: string[];
}

export interface GenerateReport {
  command: "generate";
  databases: DbGenerateResult[];
  /** All databases' warnings, each line starting with its database. */
  warnings: string[];
}

/** The header comments of the files of one change: which part it is, and why it is apart. */
function headers(name: string, phases: Phase[], names: Record<Phase, string>, plan: OnlinePlan): Record<Phase, string[]> {
  const out = { transaction: [], concurrent: [], finish: [] } as Record<Phase, string[]>;
  const finish = plan.finish.up.map((q) => q.query);
  phases.forEach((phase, k) => {
    const lines = out[phase];
    if (phases.length > 1) {
      const others = phases.filter((p) => p !== phase).map((p) => names[p]);
      lines.push(`${name}, part ${k + 1} of ${phases.length} (with ${others.join(" and ")}), ${phase === "concurrent" ? "outside a transaction" : "in a transaction"}.`);
    }
    if (phase === "transaction" && finish.some((q) => / VALIDATE CONSTRAINT /.test(q))) {
      lines.push(`Constraints on existing tables are added NOT VALID (no scan under the lock): ${names.finish} validates them.`);
    }
    if (phase === "concurrent") {
      lines.push(
        "transaction = false: CREATE/DROP INDEX CONCURRENTLY cannot run in a transaction, and does not block",
        "writes. Each statement commits on its own, and the migration can run again after a failure: a failed",
        "build leaves an INVALID index behind, which the DROP INDEX ... IF EXISTS before each build removes.",
      );
    }
    if (phase === "finish") {
      lines.push("Runs last, in its own transaction:");
      if (finish.some((q) => / VALIDATE CONSTRAINT /.test(q))) {
        lines.push("- VALIDATE CONSTRAINT checks the existing rows holding only SHARE UPDATE EXCLUSIVE: reads and writes go on;");
      }
      if (finish.some((q) => / SET NOT NULL$/.test(q))) {
        lines.push("- SET NOT NULL finds the validated CHECK (... IS NOT NULL) and skips its own scan (PostgreSQL 12+); the CHECK goes after;");
      }
      if (finish.some((q) => / USING INDEX /.test(q))) {
        lines.push("- ADD CONSTRAINT ... USING INDEX makes the unique indexes built before UNIQUE constraints (last, so its brief", "  ACCESS EXCLUSIVE lock is held only until the commit).");
      }
    }
  });
  return out;
}

function warningLine(db: DbName, notice: Notice, file: string | undefined): string {
  const line = `${db}: ${notice.subject}: ${notice.problem}`;
  if (!file) return line;
  return `${line}: check ${notice.look ? `${notice.look} in ` : ""}${file} before running it`;
}

export interface GenerateOptions {
  name?: string;
  dbs: DbName[];
  check?: boolean;
  timestamp?: number;
  /** `--rename` specs: `profiles.phone=phone_number`, `old_table=new_table`. */
  renames?: string[];
  /** `--drop` specs: `profiles.note`. */
  drops?: string[];
}

/**
 * Diffs the entities against each database and writes the migrations (all or nothing).
 *
 *   const report = await generateMigrations(config, { name: "RenamePhone", dbs: ["apidb"], renames: ["profiles.phone=phone_number"] });
 *   report.databases[0].files    // ["src/migrations/apidb/1795600000000-RenamePhone.ts"]
 *   report.databases[0].warnings // ["apidb: profiles.phone is renamed to phone_number (values kept): ..."]
 */
export async function generateMigrations(config: Config, options: GenerateOptions): Promise<GenerateReport> {
  if (!options.check) checkMigrationName(options.name);
  const renames = (options.renames ?? []).map(parseRename);
  const drops = (options.drops ?? []).map(parseDrop);
  const timestamp = options.timestamp ?? Date.now();
  await loadSqlParser();
  const states = await readStates(config, options.dbs);
  try {
    // Every database is checked and diffed before any file is written: all or nothing.
    for (const s of states) {
      checkExists(s);
      if (s.pending.length) {
        const contracts = s.pending.every((p) => p.phase === "contract");
        throw new MigrationError(contracts
          ? `${s.pending.length} contract migration(s) pending (${s.pending[0].name}...): run \`npm run migration:complete\` first so the diff is against the schema they leave`
          : `${s.pending.length} migration(s) pending (${s.pending[0].name}...): run \`npm run migration:run\` first so the diff is against the current schema`, s.db);
      }
    }
    const named = await assignNamed(states, renames, drops);
    const plans: DbPlan[] = [];
    for (const s of states) plans.push(await planDatabase(s, named.get(s.db)!, !!options.check));
    const written: string[] = [];
    const write = (file: string, text: string) => {
      fs.mkdirSync(path.dirname(file), { recursive: true });
      fs.writeFileSync(file, text, { flag: "wx" });
      written.push(file);
    };
    try {
      const databases = states.map((s, i): DbGenerateResult => {
        const { changed, plan, evolve } = plans[i];
        const phases = PHASES.filter((phase) => plan[phase].up.length + plan[phase].down.length > 0);
        const names = {} as Record<Phase, string>;
        const files = {} as Record<Phase, string | undefined>;
        const fileOf = (stamp: number) => (options.check ? undefined : path.join(migrationsDir(config.migrationsDir, s.db), `${stamp}-${options.name}.ts`));
        phases.forEach((phase, k) => {
          names[phase] = `${options.name ?? "Migration"}${timestamp + k}`;
          files[phase] = fileOf(timestamp + k);
        });
        const header = headers(options.name ?? "", phases, names, plan);
        const migrations = phases.map((phase): GeneratedMigration => {
          const part: Part = plan[phase];
          const file = files[phase];
          const lintIgnore = phase === "transaction" ? plans[i].lintIgnore : undefined;
          if (file) write(file, renderMigration(names[phase], part.up, part.down, { transaction: phase !== "concurrent", header: header[phase], lintIgnore }));
          return {
            name: names[phase], file: file && path.relative(process.cwd(), file), transaction: phase !== "concurrent",
            up: part.up.map((q) => q.query), down: part.down.map((q) => q.query),
          };
        });
        // Expand/contract after the in-place part: the expand at the next timestamp, its contract after it.
        for (const e of renderEvolveMigrations(options.name ?? "Migration", timestamp + phases.length, evolve)) {
          const file = fileOf(e.timestamp);
          if (file) write(file, e.text);
          migrations.push({ name: e.className, file: file && path.relative(process.cwd(), file), transaction: false, phase: e.phase, up: [], down: [] });
        }
        const shown = (phase: Phase) => migrations[phases.indexOf(phase)]?.file;
        return {
          db: s.db,
          changed,
          up: migrations.flatMap((m) => m.up),
          file: migrations[0]?.file,
          files: migrations.flatMap((m) => (m.file ? [m.file] : [])),
          migrations,
          warnings: [...plan.notices.map((n) => warningLine(s.db, n, shown(n.phase))), ...plans[i].warnings.map((w) => `${s.db}: ${w}`)],
          managed: plans[i].managed,
          duplicates: plans[i].duplicates,
        };
      });
      return { command: "generate", databases, warnings: databases.flatMap((d) => d.warnings) };
    } catch (error) {
      for (const file of written) fs.rmSync(file, { force: true }); // all or nothing
      throw new MigrationError(`writing the migration failed: ${(error as Error).message}`);
    }
  } finally {
    await closeStates(states);
  }
}
