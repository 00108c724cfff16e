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
import { MigrationError, UsageError } from "../errors";
import { migrationsDir } from "../runner/migration-files";
import { checkExists, closeStates, DbState, readStates } from "../deploy/plan";
import { describeSql, loadSqlParser } from "../postgres/sql-parse";
import { schemaDiffAfter } from "../schema/diff";
import { IndexFacts, ManagedIndex, managedByMigrations, readIndexes, withoutForeignIndexes } from "../schema/indexes";
import { checkMigrationName, renderMigration } from "../schema/render-migration";
import { automaticCasts, rewritesTable } from "../safety/cast-probe";
import { shortType } from "../safety/column-type-change";
import { countDataLoss, lossLine } from "../safety/data-loss";
import { fixEnumAdditions, removedEnumValues } from "../safety/enum-changes";
import { impossibleChanges } from "../safety/live-checks";
import { DiffShape, diffShape, Drop, parseDrop, parseRename, refuseUnnamed, Rename, renameStatement, shownDrop, shownRename, unnamedChanges, unusedDrops } from "../safety/named-changes";
import { columnTypeChanges, Notice, OnlinePlan, Part, Phase, PHASES, planOnlineMigration } from "../safety/online-ddl";
import { shownPath, Statement } from "../safety/typeorm-statements";

export interface GeneratedMigration {
  /** TypeORM's migration name: class name + 13-digit timestamp, e.g. `AddX1795600000001`. */
  name: string;
  /** The file written, relative to the working directory (none with --check). */
  file?: string;
  /** false: the migration declares `transaction = false` and runs outside a transaction. */
  transaction: boolean;
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
  /** `--drop` specs: `profiles.note`, `old_table`. */
  drops?: string[];
}

/** What is written for one database, before any file is. */
interface DbPlan {
  changed: boolean;
  plan: OnlinePlan;
  /** Lines printed as warnings (data that will be dropped, indexes that go, renames). */
  warnings: string[];
  managed: ManagedIndex[];
  duplicates: string[];
  /** Lint findings the transaction part accepts (a rename said with --rename), with the reason. */
  lintIgnore: Record<string, string>;
}

/** The database each --rename / --drop is about: where its table is (or, for a table rename, its old name). */
async function assignNamed(states: DbState[], renames: Rename[], drops: Drop[]): Promise<Map<DbName, { renames: Rename[]; drops: Drop[] }>> {
  const out = new Map(states.map((s) => [s.db, { renames: [] as Rename[], drops: [] as Drop[] }]));
  const tablesOf = new Map<DbName, Set<string>>();
  for (const s of states) {
    const rows = (await s.dataSource.query(`SELECT tablename FROM pg_tables WHERE schemaname = 'public'`)) as Array<{ tablename: string }>;
    tablesOf.set(s.db, new Set(rows.map((r) => r.tablename)));
  }
  const where = (table: string) => states.filter((s) => tablesOf.get(s.db)!.has(table)).map((s) => s.db);
  const scope = states.map((s) => s.db).join(", ");
  for (const r of renames) {
    const table = r.kind === "column" ? r.table : r.from;
    const dbs = where(table);
    if (!dbs.length) throw new UsageError(`--rename ${shownRename(r)}: no table ${table} in ${scope}`);
    dbs.forEach((db) => out.get(db)!.renames.push(r));
  }
  for (const d of drops) {
    const dbs = where(d.table);
    if (!dbs.length) throw new UsageError(`--drop ${shownDrop(d)}: no table ${d.table} in ${scope}`);
    dbs.forEach((db) => out.get(db)!.drops.push(d));
  }
  return out;
}

/** Checks a column rename against the database: the old column is there, the new name is free. */
async function checkRename(s: DbState, r: Rename): Promise<void> {
  if (r.kind !== "column") {
    const [{ taken }] = (await s.dataSource.query(`SELECT to_regclass($1) IS NOT NULL AS taken`, [`public."${r.to}"`])) as Array<{ taken: boolean }>;
    if (taken) throw new UsageError(`--rename ${shownRename(r)}: table ${r.to} exists already`, s.db);
    return;
  }
  const found = (await s.dataSource.query(
    `SELECT attname FROM pg_attribute WHERE attrelid = to_regclass($1) AND attname = ANY($2) AND attnum > 0 AND NOT attisdropped`,
    [`public."${r.table}"`, [r.from, r.to]],
  )) as Array<{ attname: string }>;
  const names = found.map((f) => f.attname);
  if (!names.includes(r.from)) throw new UsageError(`--rename ${shownRename(r)}: ${r.table} has no column ${r.from}`, s.db);
  if (names.includes(r.to)) throw new UsageError(`--rename ${shownRename(r)}: ${r.table} has a column ${r.to} already`, s.db);
}

/**
 * Indexes TypeORM's up drops for good (not made again in the same change, nor going with their
 * table or column): announced like a dropped column.
 */
function droppedIndexes(up: string[], indexes: IndexFacts[], shape: DiffShape): string[] {
  const actions = up.flatMap((q) => describeSql(q));
  const created = new Set(actions.flatMap((a) => (a.kind === "create-index" && a.name ? [a.name] : [])));
  const goesAlong = (name: string) => {
    const index = indexes.find((i) => i.name === name);
    return !!index && (shape.droppedTables.includes(index.table) || index.columns.some((c) => shape.droppedColumns.some((d) => d.table === index.table && d.column === c)));
  };
  return actions.flatMap((a) => {
    const name = a.kind === "drop-index" ? a.name.split(".").pop()! : undefined;
    return name && !created.has(name) && !goesAlong(name) ? [name] : [];
  });
}

/** Diffs one database and decides what to write, refusing what would lose data unasked or cannot work. */
async function planDatabase(s: DbState, named: { renames: Rename[]; drops: Drop[] }, check: boolean): Promise<DbPlan> {
  for (const r of named.renames) await checkRename(s, r);
  const renames = named.renames.map(renameStatement);
  const typeorm = await schemaDiffAfter(s.dataSource, renames.map((r) => r.up), 2000);
  const indexes = await readIndexes(s.dataSource);
  const applied = new Set(s.applied.map((a) => a.name));
  const managed = managedByMigrations(indexes, s.files.filter((f) => applied.has(f.name)));
  const { diff: filtered, duplicates } = withoutForeignIndexes(typeorm, managed, indexes);
  const { rest, part: enumPart } = await fixEnumAdditions(s.dataSource, filtered);

  const up = rest.up.map((q) => q.query);
  const shape = diffShape(up);
  unusedDrops(shape, named.drops, s.db);
  const typeChanges = columnTypeChanges(rest);
  const automatic = await automaticCasts(s.dataSource, typeChanges.flatMap((c) => [{ from: c.from.type, to: c.to.type }, { from: c.to.type, to: c.from.type }]));
  const refusals = [
    ...unnamedChanges(shape, named.drops),
    ...(await impossibleChanges(s.dataSource, { up, typeChanges, automaticCast: automatic })),
  ];
  for (const r of await removedEnumValues(s.dataSource, up)) {
    for (const c of r.columns) {
      const [{ n }] = (await s.dataSource.query(`SELECT count(*) AS n FROM "${c.table}" WHERE "${c.column}"::text = ANY($1)`, [r.values])) as Array<{ n: string }>;
      if (Number(n) > 0) refusals.push(`${c.table}.${c.column}: ${n} rows hold ${r.values.join(", ")}, which the entity removes from ${r.type}: change those rows first`);
    }
  }
  // --check writes nothing: it shows the whole diff and says what generate would refuse.
  if (!check) refuseUnnamed(refusals, s.db);

  const plan = planOnlineMigration(rest, automatic);
  const renamed: Statement[] = renames.map((r) => ({ query: r.up }));
  plan.transaction = {
    up: [...enumPart.up, ...renamed, ...plan.transaction.up],
    down: [...plan.transaction.down, ...renames.map((r) => ({ query: r.down })).reverse(), ...enumPart.down],
  };
  // Named drops are counted now; the generic "DROP ... deletes" notices would only repeat them.
  plan.notices = plan.notices.filter((n) => !/^DROP (COLUMN|TABLE) /.test(n.problem));
  const losses = await countDataLoss(s.dataSource, PHASES.flatMap((phase) => plan[phase].up.map((q) => q.query)));
  const warnings = [
    ...(check ? refusals.map((r) => `generate refuses: ${r}`) : []),
    ...losses.map(lossLine),
    ...named.renames.map((r) => `${r.kind === "column" ? `${r.table}.${r.from}` : r.from} is renamed to ${r.to} (values kept): a service still using the old name fails until it is deployed`),
    ...droppedIndexes(up, indexes, shape).map((name) => `index ${name} is dropped: no entity declares it (to keep it, declare it with @Index("${name}", { synchronize: false }))`),
    ...duplicates.map((d) => `${d}: not written`),
  ];
  const lintIgnore: Record<string, string> = {};
  // A type change PostgreSQL makes without a rewrite (a longer varchar, varchar -> text) takes its
  // lock only for the catalog update: squawk's changing-column-type cannot know, PostgreSQL can.
  const rewrites = await Promise.all(typeChanges.map(async (t) => ({ t, rewrites: await rewritesTable(s.dataSource, t.from.type, t.to.type) })));
  for (const { t, rewrites: r } of rewrites) {
    if (r === false) continue;
    warnings.push(`${shownPath(t.table)}.${t.column}: ${shortType(t.from.type)} -> ${shortType(t.to.type)} rewrites ${shownPath(t.table)} under ACCESS EXCLUSIVE (reads and writes wait while it runs): lint refuses it (changing-column-type); accept it in the file's lint with a reason only if the table is small`);
  }
  if (rewrites.length && rewrites.every((r) => r.rewrites === false)) {
    lintIgnore["changing-column-type"] = `${rewrites.map(({ t }) => `${shownPath(t.table)}.${t.column} ${shortType(t.from.type)} -> ${shortType(t.to.type)}`).join(", ")}: no rewrite and no scan (PostgreSQL's own check at generate time)`;
  }
  const said = named.renames.map(shownRename).join(", ");
  if (named.renames.some((r) => r.kind === "column")) lintIgnore["renaming-column"] = `said with --rename ${said}`;
  if (named.renames.some((r) => r.kind === "table")) lintIgnore["renaming-table"] = `said with --rename ${said}`;
  if (named.drops.some((d) => d.column)) lintIgnore["ban-drop-column"] = `said with --drop ${named.drops.map(shownDrop).join(", ")}`;
  if (named.drops.some((d) => !d.column)) lintIgnore["ban-drop-table"] = `said with --drop ${named.drops.map(shownDrop).join(", ")}`;
  // DROP NOT NULL is metadata only; squawk bans it because readers may assume a value. The entity said it.
  const nullable = up.flatMap((q) => {
    const m = /^ALTER TABLE ("[^"]+"(?:\."[^"]+")?) ALTER COLUMN "([^"]+)" DROP NOT NULL$/.exec(q.trim());
    return m ? [`${shownPath(m[1])}.${m[2]}`] : [];
  });
  if (nullable.length) {
    lintIgnore["ban-drop-not-null"] = `${nullable.join(", ")}: nullable, as the entity says (metadata only, no scan)`;
    warnings.push(...nullable.map((c) => `${c} may hold NULL from now on: readers that assume a value must handle it`));
  }
  const changed = PHASES.some((phase) => plan[phase].up.length + plan[phase].down.length > 0);
  return { changed, plan, warnings, managed, duplicates, lintIgnore };
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
        throw new MigrationError(`${s.pending.length} migration(s) pending (${s.pending[0].name}...): run \`npm run migration:run\` first so the diff is against the current schema`, s.db);
      }
    }
    const named = await assignNamed(states, renames, drops);
    const plans: DbPlan[] = [];
    for (const s of states) plans.push(await planDatabase(s, named.get(s.db)!, !!options.check));
    const written: string[] = [];
    try {
      const databases = states.map((s, i): DbGenerateResult => {
        const { changed, plan } = plans[i];
        const phases = PHASES.filter((phase) => plan[phase].up.length + plan[phase].down.length > 0);
        const names = {} as Record<Phase, string>;
        const files = {} as Record<Phase, string | undefined>;
        phases.forEach((phase, k) => {
          names[phase] = `${options.name ?? "Migration"}${timestamp + k}`;
          if (!options.check) files[phase] = path.join(migrationsDir(config.migrationsDir, s.db), `${timestamp + k}-${options.name}.ts`);
        });
        const header = headers(options.name ?? "", phases, names, plan);
        const migrations = phases.map((phase): GeneratedMigration => {
          const part: Part = plan[phase];
          const file = files[phase];
          if (file) {
            fs.mkdirSync(path.dirname(file), { recursive: true });
            const lintIgnore = phase === "transaction" ? plans[i].lintIgnore : undefined;
            fs.writeFileSync(file, renderMigration(names[phase], part.up, part.down, { transaction: phase !== "concurrent", header: header[phase], lintIgnore }), { flag: "wx" });
            written.push(file);
          }
          return {
            name: names[phase], file: file && path.relative(process.cwd(), file), transaction: phase !== "concurrent",
            up: part.up.map((q) => q.query), down: part.down.map((q) => q.query),
          };
        });
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
