// What migration:generate writes for one database, decided before any file is written: TypeORM's
// diff (taken as if the named renames and drops were done), less what is not generate's to change,
// checked against the rows the database holds, then planned in three kinds (DESIGN.md):
//   in place, online   src/safety/online-ddl.ts (CONCURRENTLY, NOT VALID + VALIDATE, NOT NULL via CHECK)
//   expand, contract   src/evolve: a column rename, a type change that rewrites the table, a dropped
//                      column; old and new kept equal by a trigger until migration:complete
//   refused            with one line per column saying what to do instead
import type { DbName } from "../databases";
import { UsageError } from "../errors";
import type { DbState } from "../deploy/plan";
import type { EvolveChange } from "../evolve";
import { quoteIdent, rows } from "../postgres/sql";
import { describeSql } from "../postgres/sql-parse";
import { schemaDiffAfter } from "../schema/diff";
import { IndexFacts, ManagedIndex, managedByMigrations, readIndexes, withoutForeignIndexes } from "../schema/indexes";
import { automaticCasts, rewritesTable } from "../safety/cast-probe";
import { ColumnTypeChange, shortType } from "../safety/column-type-change";
import { countDataLoss, lossLine } from "../safety/data-loss";
import { fixEnumAdditions, removedEnumValues } from "../safety/enum-changes";
import { impossibleChanges, LiveNames } from "../safety/live-checks";
import { DiffShape, diffShape, Drop, dropStatement, refuseUnnamed, Rename, renameStatement, shownDrop, shownRename, unnamedChanges } from "../safety/named-changes";
import { columnTypeChanges, OnlinePlan, Part, PHASES, planOnlineMigration } from "../safety/online-ddl";
import { shownPath, Statement } from "../safety/typeorm-statements";

export interface DbPlan {
  changed: boolean;
  /** The in-place part, as up to three migrations. */
  plan: OnlinePlan;
  /** The expand/contract part: written after the in-place part (expand, then contract). */
  evolve: EvolveChange[];
  /** Lines printed as warnings (data that will be dropped, indexes that go, renames). */
  warnings: string[];
  managed: ManagedIndex[];
  duplicates: string[];
  /** Lint findings the transaction part accepts (said by the user, or checked by PostgreSQL), with the reason. */
  lintIgnore: Record<string, string>;
}

export interface Named {
  renames: Rename[];
  drops: Drop[];
}

/** The database each --rename / --drop is about: where its table is (for a table rename, its old name). */
export async function assignNamed(states: DbState[], renames: Rename[], drops: Drop[]): Promise<Map<DbName, Named>> {
  const out = new Map(states.map((s) => [s.db, { renames: [] as Rename[], drops: [] as Drop[] }]));
  const tablesOf = new Map<DbName, Set<string>>();
  for (const s of states) {
    const found = await rows<{ tablename: string }>(s.dataSource, `SELECT tablename FROM pg_tables WHERE schemaname = 'public'`);
    tablesOf.set(s.db, new Set(found.map((r) => r.tablename)));
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

interface ColumnFacts {
  type: string;
  notNull: boolean;
  default?: string;
}

/** A column as the database has it (format_type, NOT NULL, default), or undefined. */
async function columnFacts(s: DbState, table: string, column: string): Promise<ColumnFacts | undefined> {
  const [c] = await rows<{ type: string; notnull: boolean; def: string | null }>(s.dataSource, `
    SELECT format_type(a.atttypid, a.atttypmod) AS type, a.attnotnull AS notnull, pg_get_expr(d.adbin, d.adrelid) AS def
      FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
     WHERE a.attrelid = to_regclass($1) AND a.attname = $2 AND a.attnum > 0 AND NOT a.attisdropped`, [`public.${quoteIdent(table)}`, column]);
  return c ? { type: c.type, notNull: c.notnull, ...(c.def !== null ? { default: c.def } : {}) } : undefined;
}

/**
 * Why a two-phase change cannot carry this column yet, or undefined when it can: constraints (a
 * foreign key, UNIQUE, CHECK, primary key) go with the old column at the contract, a rename's indexes
 * would come back under other names, and a type without `=` (json) cannot be compared by the trigger.
 */
async function twoPhaseBlocker(s: DbState, table: string, column: string, kind: "rename" | "type"): Promise<string | undefined> {
  const [facts] = await rows<{ constraints: string[]; indexes: string[]; equality: boolean }>(s.dataSource, `
    SELECT array(SELECT c.conname::text FROM pg_constraint c WHERE c.conrelid = a.attrelid AND a.attnum = ANY (c.conkey) ORDER BY 1) AS constraints,
           array(SELECT ic.relname::text FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid WHERE i.indrelid = a.attrelid AND a.attnum = ANY (i.indkey::int2[]) ORDER BY 1) AS indexes,
           EXISTS (SELECT 1 FROM pg_operator o WHERE o.oprname = '=' AND o.oprleft = a.atttypid AND o.oprright = a.atttypid) AS equality
      FROM pg_attribute a WHERE a.attrelid = to_regclass($1) AND a.attname = $2 AND NOT a.attisdropped`, [`public.${quoteIdent(table)}`, column]);
  if (!facts) return undefined;
  if (facts.constraints.length) return `its constraints (${facts.constraints.join(", ")}) would go with the old column`;
  if (kind === "rename" && facts.indexes.length) return `its indexes (${facts.indexes.join(", ")}) would come back under other names`;
  if (!facts.equality) return "its type has no = to compare old and new values";
  return undefined;
}

/**
 * Checks the named changes against the database (what is renamed or dropped is there, a new name is
 * free) and returns the facts of each renamed or dropped column, by `table.column`.
 */
async function checkNamed(s: DbState, named: Named): Promise<Map<string, ColumnFacts>> {
  const facts = new Map<string, ColumnFacts>();
  for (const r of named.renames) {
    if (r.kind === "table") {
      const [{ taken }] = await rows<{ taken: boolean }>(s.dataSource, `SELECT to_regclass($1) IS NOT NULL AS taken`, [`public.${quoteIdent(r.to)}`]);
      if (taken) throw new UsageError(`--rename ${shownRename(r)}: table ${r.to} exists already`, s.db);
      continue;
    }
    const from = await columnFacts(s, r.table, r.from);
    if (!from) throw new UsageError(`--rename ${shownRename(r)}: ${r.table} has no column ${r.from}`, s.db);
    facts.set(`${r.table}.${r.from}`, from);
    if (await columnFacts(s, r.table, r.to)) throw new UsageError(`--rename ${shownRename(r)}: ${r.table} has a column ${r.to} already`, s.db);
    if (named.renames.some((t) => t.kind === "table" && t.from === r.table)) {
      throw new UsageError(`--rename ${shownRename(r)}: rename the table and its columns in two changes (the column rename runs while both names are in use)`, s.db);
    }
  }
  for (const d of named.drops) {
    const f = await columnFacts(s, d.table, d.column);
    if (!f) throw new UsageError(`--drop ${shownDrop(d)}: ${d.table} has no column ${d.column}`, s.db);
    // The column stays until migration:complete: the new version, which does not know it, must be able to insert.
    if (f.notNull && f.default === undefined) {
      throw new UsageError(`--drop ${shownDrop(d)}: ${d.table}.${d.column} is NOT NULL without a default, so the new version could not insert rows while it waits for migration:complete: make it nullable first (generate, run), then drop it`, s.db);
    }
    facts.set(`${d.table}.${d.column}`, f);
  }
  return facts;
}

/**
 * Names in the diff (taken after the renames) as the live database has them, for the checks that
 * count its rows: `phone_number` is still `phone` there.
 */
function liveNamesOf(renames: Rename[]): LiveNames {
  const table = (t: string) => renames.find((r) => r.kind === "table" && r.to === t)?.from ?? t;
  return {
    table,
    column: (t, c) => {
      const r = renames.find((x) => x.kind === "column" && table(t) === x.table && x.to === c);
      return r?.kind === "column" ? r.from : c;
    },
  };
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
    return !!index && index.columns.some((c) => shape.droppedColumns.some((d) => d.table === index.table && d.column === c));
  };
  return actions.flatMap((a) => {
    const name = a.kind === "drop-index" ? a.name.split(".").pop()! : undefined;
    return name && !created.has(name) && !goesAlong(name) ? [name] : [];
  });
}

/**
 * TypeORM's diff without the column a type change rewrites (its DROP COLUMN and ADD, both ways, and
 * the indexes TypeORM drops and makes again around it): expand/contract changes it instead.
 */
function withoutColumn(diff: Part, table: string, column: string): Part {
  const bare = (t: string) => t.replace(/^public\./, "");
  // The indexes TypeORM drops and makes again around the column; one the entity newly declares stays.
  const dropped = new Set(diff.up.flatMap((q) => describeSql(q.query).flatMap((a) => (a.kind === "drop-index" ? [a.name.split(".").pop()!] : []))));
  const indexNames = new Set(diff.up.flatMap((q) => describeSql(q.query).flatMap((a) => (a.kind === "create-index" && bare(a.table) === table && a.columns.includes(column) && a.name && dropped.has(a.name) ? [a.name] : []))));
  const touches = (q: Statement) => describeSql(q.query).some((a) =>
    ((a.kind === "drop-column" || a.kind === "add-column") && bare(a.table) === table && a.column === column)
    || (a.kind === "create-index" && !!a.name && indexNames.has(a.name)));
  const dropsIndex = (q: Statement) => describeSql(q.query).some((a) => a.kind === "drop-index" && indexNames.has(a.name.split(".").pop()!));
  return { up: diff.up.filter((q) => !touches(q) && !dropsIndex(q)), down: diff.down.filter((q) => !touches(q) && !dropsIndex(q)) };
}

/** A statement of the in-place part that names `column` of `table` (which only exists once an expand made it). */
function mentions(statements: Statement[], table: string, column: string): boolean {
  // On the table itself, or from another one (a foreign key's REFERENCES "t"("c")).
  return statements.some((q) => q.query.includes(`"${table}"`) && q.query.includes(`"${column}"`));
}

/** Diffs one database and decides what to write, refusing what would lose data unasked or cannot work. */
export async function planDatabase(s: DbState, named: Named, check: boolean): Promise<DbPlan> {
  const facts = await checkNamed(s, named);
  const live = liveNamesOf(named.renames);

  // TypeORM's diff as if the renames and drops were done (in a transaction rolled back): what else changes.
  const before = [...named.renames.map((r) => renameStatement(r).up), ...named.drops.map(dropStatement)];
  const typeorm = await schemaDiffAfter(s.dataSource, before, 2000);
  const indexes = await readIndexes(s.dataSource);
  const applied = new Set(s.applied.map((a) => a.name));
  const managed = managedByMigrations(indexes, s.files.filter((f) => applied.has(f.name)));
  const { diff: filtered, duplicates } = withoutForeignIndexes(typeorm, managed, indexes, live);
  const { rest: diff, part: enumPart, added } = await fixEnumAdditions(s.dataSource, filtered);

  const typeChanges = columnTypeChanges(diff);
  const up = diff.up.map((q) => q.query);
  const shape = diffShape(up, typeChanges);
  const refusals = unnamedChanges(shape);
  for (const d of named.drops) {
    if (shape.addedColumns.some((a) => a.table === d.table && a.column === d.column)) throw new UsageError(`--drop ${shownDrop(d)}: the entity still has it`, s.db);
  }
  const automatic = await automaticCasts(s.dataSource, typeChanges.flatMap((c) => [{ from: c.from.type, to: c.to.type }, { from: c.to.type, to: c.from.type }]));
  refusals.push(...(await impossibleChanges(s.dataSource, { up, typeChanges, automaticCast: automatic, live })));
  for (const r of await removedEnumValues(s.dataSource, up)) {
    for (const c of r.columns) {
      const where = c.array ? `${quoteIdent(c.column)}::text[] && $1::text[]` : `${quoteIdent(c.column)}::text = ANY($1)`;
      const [{ n }] = await rows<{ n: string }>(s.dataSource, `SELECT count(*) AS n FROM ${quoteIdent(c.table)} WHERE ${where}`, [r.values]);
      if (Number(n) > 0) refusals.push(`${c.table}.${c.column}: ${n} rows hold ${r.values.join(", ")}, which the entity removes from ${r.type}: change those rows first`);
    }
  }
  // ADD VALUE commits with its migration: a value used in the same transaction is refused by PostgreSQL.
  for (const v of added) {
    if (up.some((q) => q.includes(`'${v.value.replace(/'/g, "''")}'`))) refusals.push(`${v.type}: the new value '${v.value}' is used in the same change: generate the value first, run it, then use it`);
  }

  // Expand/contract: renamed columns, type changes that rewrite the table, dropped columns.
  const evolve: EvolveChange[] = [];
  let rest = diff;
  const inPlaceTypes: ColumnTypeChange[] = [];
  const rewritten: string[] = [];
  for (const t of typeChanges) {
    const table = shownPath(t.table);
    if ((await rewritesTable(s.dataSource, t.from.type, t.to.type)) === false) {
      inPlaceTypes.push(t);
      continue;
    }
    const blocker = await twoPhaseBlocker(s, live.table(table), live.column(table, t.column), "type");
    if (blocker) {
      rewritten.push(`${table}.${t.column}: ${shortType(t.from.type)} -> ${shortType(t.to.type)} rewrites ${table} under ACCESS EXCLUSIVE, in place (two phases cannot carry it: ${blocker}): lint refuses it (changing-column-type); accept it in the file's lint with a reason only if the table is small`);
      continue;
    }
    const current = await columnFacts(s, live.table(table), live.column(table, t.column));
    evolve.push({
      kind: "change-type", table, column: t.column, fromType: current?.type ?? t.from.type, toType: t.to.type, notNull: t.to.notNull,
      ...(t.to.default !== undefined ? { default: t.to.default } : {}),
      fromNotNull: current?.notNull ?? t.from.notNull, fromDefault: current?.default ?? null,
      // No assignment cast (text -> integer): the backfill's UPDATE says the cast (values were checked to convert).
      ...(automatic(t.from.type, t.to.type) ? {} : { toNew: `${quoteIdent(t.column)}::${t.to.type}` }),
    });
    rest = withoutColumn(rest, table, t.column);
  }
  const inPlaceRenames: Rename[] = [];
  for (const r of named.renames) {
    if (r.kind !== "column") continue;
    const f = facts.get(`${r.table}.${r.from}`)!;
    const blocker = await twoPhaseBlocker(s, r.table, r.from, "rename");
    if (blocker) {
      // In place: every value kept, but an old service still naming the column fails until it is deployed.
      inPlaceRenames.push(r);
      rewritten.push(`${r.table}.${r.from} is renamed to ${r.to} in place (two phases cannot carry it: ${blocker}): values kept, but a service still using ${r.from} fails until it is deployed`);
      continue;
    }
    if (mentions(rest.up, r.table, r.to) || evolve.some((e) => e.kind === "change-type" && e.table === r.table && e.column === r.to)) {
      refusals.push(`${r.table}.${r.to}: renamed and changed at once: generate the rename alone, run and complete it, then change the column`);
    }
    evolve.push({ kind: "rename-column", table: r.table, from: r.from, to: r.to, type: f.type, notNull: f.notNull, ...(f.default !== undefined ? { default: f.default } : {}) });
  }
  for (const d of named.drops) {
    const f = facts.get(`${d.table}.${d.column}`)!;
    const own = indexes.filter((i) => i.table === d.table && i.columns.includes(d.column) && !i.constraint).map((i) => i.definition);
    evolve.push({
      kind: "drop-column", table: d.table, column: d.column, type: f.type, notNull: f.notNull,
      ...(f.default !== undefined ? { default: f.default } : {}), ...(own.length ? { indexes: own } : {}),
    });
  }
  // --check writes nothing: it shows the whole diff and says what generate would refuse.
  if (!check) refuseUnnamed(refusals, s.db);

  const plan = planOnlineMigration(rest, automatic);
  const tableRenames = [...named.renames.filter((r) => r.kind === "table"), ...inPlaceRenames].map(renameStatement);
  plan.transaction = {
    up: [...enumPart.up, ...tableRenames.map((r) => ({ query: r.up })), ...plan.transaction.up],
    down: [...plan.transaction.down, ...tableRenames.map((r) => ({ query: r.down })).reverse(), ...enumPart.down],
  };
  const losses = await countDataLoss(s.dataSource, named.drops.map(dropStatement));
  const warnings = [
    ...(check ? refusals.map((r) => `generate refuses: ${r}`) : []),
    ...losses.map((l) => `${lossLine(l)} (by migration:complete: the column stays until the old services are gone)`),
    ...named.renames.filter((r) => !inPlaceRenames.includes(r)).map((r) => r.kind === "column"
      ? `${r.table}.${r.from} is renamed to ${r.to} in two phases (values kept): migration:run adds ${r.to} and keeps both equal, migration:complete drops ${r.from} once no client writes it`
      : `${r.from} is renamed to ${r.to} (values kept): a service still using the old name fails until it is deployed`),
    ...rewritten,
    ...evolve.filter((e) => e.kind === "change-type").map((e) => e.kind === "change-type" && `${e.table}.${e.column}: ${shortType(e.fromType)} -> ${shortType(e.toType)} in two phases (a rewrite in place would hold ACCESS EXCLUSIVE): a new column kept equal by a trigger and filled in batches, swapped in by migration:complete`).filter((w): w is string => !!w),
    ...droppedIndexes(up, indexes, shape).map((name) => `index ${name} is dropped: no entity declares it (to keep it, declare it with @Index("${name}", { synchronize: false }))`),
    ...duplicates.map((d) => `${d}: not written`),
  ];
  const lintIgnore: Record<string, string> = {};
  // A type change PostgreSQL makes without a rewrite (a longer varchar, varchar -> text) takes its
  // lock only for the catalog update: squawk's changing-column-type cannot know, PostgreSQL can. Only
  // when those are the file's only type changes (an enum's conversion rewrites).
  const alterTypes = plan.transaction.up.flatMap((q) => describeSql(q.query)).filter((a) => a.kind === "alter-column-type").length;
  if (inPlaceTypes.length && alterTypes === inPlaceTypes.length) {
    lintIgnore["changing-column-type"] = `${inPlaceTypes.map((t) => `${shownPath(t.table)}.${t.column} ${shortType(t.from.type)} -> ${shortType(t.to.type)}`).join(", ")}: no rewrite and no scan (PostgreSQL's own check at generate time)`;
  }
  if (named.renames.some((r) => r.kind === "table")) lintIgnore["renaming-table"] = `said with --rename ${named.renames.filter((r) => r.kind === "table").map(shownRename).join(", ")}`;
  if (inPlaceRenames.length) lintIgnore["renaming-column"] = `said with --rename ${inPlaceRenames.map(shownRename).join(", ")} (in place: two phases cannot carry it)`;
  // DROP NOT NULL is metadata only; squawk bans it because readers may assume a value. The entity said it.
  const nullable = up.flatMap((q) => {
    const m = /^ALTER TABLE ("[^"]+"(?:\."[^"]+")?) ALTER COLUMN "([^"]+)" DROP NOT NULL$/.exec(q.trim());
    return m ? [`${shownPath(m[1])}.${m[2]}`] : [];
  });
  if (nullable.length) {
    lintIgnore["ban-drop-not-null"] = `${nullable.join(", ")}: nullable, as the entity says (metadata only, no scan)`;
    warnings.push(...nullable.map((c) => `${c} may hold NULL from now on: readers that assume a value must handle it`));
  }
  const changed = evolve.length > 0 || PHASES.some((phase) => plan[phase].up.length + plan[phase].down.length > 0);
  return { changed, plan, evolve, warnings, managed, duplicates, lintIgnore };
}
