// Changes that cannot work on the rows a table has, found at generate time on the database the
// diff was made against, instead of half way through a deploy. One line per column, each saying
// what to do instead. Reads only (counts; the fit test runs in a transaction that is rolled back).
//
//   await impossibleChanges(dataSource, { up, typeChanges, createdTables })
//   // ["langchain_pg_embedding.embedding: vector(768) -> vector(1024) cannot convert its 20000 values (...)"]
import type { DataSource } from "typeorm";
import { Queryable, quoteIdent, rows } from "../postgres/sql";
import { describeSql } from "../postgres/sql-parse";
import type { ColumnTypeChange } from "./column-type-change";
import { narrowing, shortType } from "./column-type-change";

const bare = (table: string) => table.replace(/^public\./, "").replace(/"/g, "");

async function count(q: Queryable, sql: string): Promise<number> {
  return Number((await rows<{ n: string }>(q, sql))[0].n);
}

const vectorDims = (type: string) => /^vector\((\d+)\)$/i.exec(type.trim())?.[1];

/**
 * How many non-null values of `table.column` do not convert to `to` the way the migration converts
 * them (an assignment, as ALTER COLUMN ... TYPE without USING does; an I/O cast where PostgreSQL
 * has no assignment cast, as `USING c::type` does), or come back different (2.5 -> 3, a time of day
 * cut off): those would be lost. Undefined when it cannot be tested here.
 */
async function misfits(dataSource: DataSource, table: string, column: string, from: string, to: string): Promise<number | undefined> {
  const runner = dataSource.createQueryRunner();
  try {
    await runner.connect();
    await runner.query("BEGIN");
    // Compared back only where the old type has `=` (json has none: converting is the test there).
    const [{ eq }] = (await runner.query(`SELECT EXISTS (SELECT 1 FROM pg_operator WHERE oprname = '=' AND oprleft = $1::regtype AND oprright = $1::regtype) AS eq`, [from])) as Array<{ eq: boolean }>;
    await runner.query(`CREATE FUNCTION pg_temp.migration_fits(v ${from}) RETURNS boolean LANGUAGE plpgsql AS $$
      DECLARE x ${to}; BEGIN x := v; RETURN ${eq ? `x::${from} IS NOT DISTINCT FROM v` : "true"}; EXCEPTION WHEN others THEN RETURN false; END $$`);
    return await count(runner, `SELECT count(*) AS n FROM ${quoteIdent(table)} WHERE ${quoteIdent(column)} IS NOT NULL AND NOT pg_temp.migration_fits(${quoteIdent(column)})`);
  } catch {
    return undefined;
  } finally {
    await runner.query("ROLLBACK").catch(() => undefined);
    await runner.release();
  }
}

/** Names in the diff as the live database has them (a renamed column is still under its old name there). */
export interface LiveNames {
  table(table: string): string;
  column(table: string, column: string): string;
}

const SAME: LiveNames = { table: (t) => t, column: (_t, c) => c };

export interface ImpossibleInput {
  /** TypeORM's up statements. */
  up: string[];
  /** Column type changes found in the diff (DROP + ADD of one column). */
  typeChanges: ColumnTypeChange[];
  /** Whether PostgreSQL converts `from` to `to` by itself. */
  automaticCast: (from: string, to: string) => boolean;
  live?: LiveNames;
}

/** The changes of the diff that the rows of their tables make impossible: one line each. */
export async function impossibleChanges(dataSource: DataSource, input: ImpossibleInput): Promise<string[]> {
  const live = input.live ?? SAME;
  const lines: string[] = [];
  const created = new Set<string>();
  const retyped = new Set(input.typeChanges.map((t) => `${bare(t.table)}.${t.column}`));
  for (const sql of input.up) {
    for (const a of describeSql(sql)) {
      if (a.kind === "create-table") created.add(bare(a.table));
      const table = "table" in a ? bare(a.table) : "";
      if (a.kind === "add-column" && a.notNull && !a.hasDefault && !created.has(table) && !retyped.has(`${table}.${a.column}`)) {
        const n = await count(dataSource, `SELECT count(*) AS n FROM ${quoteIdent(live.table(table))}`);
        if (n > 0) lines.push(`${table}.${a.column}: a NOT NULL column without a default cannot be added to ${table} (${n} rows): give it a default, or add it nullable, fill it, then make it NOT NULL`);
      }
      if (a.kind === "set-not-null" && !created.has(table)) {
        const n = await count(dataSource, `SELECT count(*) AS n FROM ${quoteIdent(live.table(table))} WHERE ${quoteIdent(live.column(table, a.column))} IS NULL`);
        if (n > 0) lines.push(`${table}.${a.column}: ${n} rows are NULL, so it cannot become NOT NULL: fill them first (a data migration, e.g. with backfill), then generate again`);
      }
    }
  }
  for (const t of input.typeChanges) {
    const table = bare(t.table);
    const shown = `${shortType(t.from.type)} -> ${shortType(t.to.type)}`;
    const [fromDims, toDims] = [vectorDims(t.from.type), vectorDims(t.to.type)];
    if (fromDims && toDims && fromDims !== toDims) {
      const n = await count(dataSource, `SELECT count(${quoteIdent(live.column(table, t.column))}) AS n FROM ${quoteIdent(live.table(table))}`);
      if (n > 0) lines.push(`${table}.${t.column}: ${shown} cannot convert its ${n} values (no cast changes a vector's dimensions): add a new vector(${toDims}) column, re-embed into it, then drop the old one`);
      continue;
    }
    if (!narrowing(t.from.type, t.to.type) && input.automaticCast(t.from.type, t.to.type)) continue;
    const n = await misfits(dataSource, live.table(table), live.column(table, t.column), t.from.type, t.to.type);
    if (n) lines.push(`${table}.${t.column}: ${n} ${n === 1 ? "value does" : "values do"} not convert ${shown} unchanged: change those rows first, or choose a type that holds them`);
  }
  return lines;
}
