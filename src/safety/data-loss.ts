// Statements that delete data for good: every DROP COLUMN and DROP TABLE left in a generated up is
// announced, so none goes through unread.
//
//   dataLoss([{ query: `ALTER TABLE "profiles" DROP COLUMN "nickname"` }])
//   // [{ subject: "profiles.nickname", problem: "DROP COLUMN deletes the column and its data" }]
import { Queryable, quoteIdent, rows } from "../postgres/sql";
import { describeSql, loadSqlParser } from "../postgres/sql-parse";
import { parseStatement, shownPath, Statement } from "./typeorm-statements";

export interface DataLoss {
  /** `table.column` or `table`. */
  subject: string;
  problem: string;
}

export function dataLoss(up: Statement[]): DataLoss[] {
  const found: DataLoss[] = [];
  for (const s of up) {
    const p = parseStatement(s.query);
    if (p.kind === "drop-column") found.push({ subject: `${shownPath(p.table)}.${p.column}`, problem: "DROP COLUMN deletes the column and its data" });
    else if (p.kind === "drop-table") found.push({ subject: shownPath(p.table), problem: "DROP TABLE deletes the table and its rows" });
    else {
      // Other shapes a hand-completed diff may hold: DROP TABLE IF EXISTS ..., TRUNCATE ...
      const m = /^\s*(DROP TABLE|TRUNCATE)(?: TABLE)?(?: IF EXISTS)? ("[^"]+"(?:\."[^"]+")?|\w+)/i.exec(s.query);
      if (m) found.push({ subject: shownPath(m[2]), problem: `${m[1].toUpperCase()} deletes the table's rows` });
    }
  }
  return found;
}

export interface CountedLoss {
  /** `profiles.note` or `old_table`. */
  subject: string;
  /** Non-null values of the column, or rows of the table. */
  count: number;
  unit: "values" | "rows";
}

/** `profiles.note: 1234 values will be dropped`. */
export function lossLine(loss: CountedLoss): string {
  return `${loss.subject}: ${loss.count} ${loss.unit === "values" ? (loss.count === 1 ? "value" : "values") : loss.count === 1 ? "row" : "rows"} will be dropped`;
}

/**
 * What `statements` would delete, counted on the database before they run: non-null values of each
 * dropped column, rows of each dropped or truncated table. Only what holds data is returned;
 * tables and columns that do not exist (yet) are skipped. Reads only: count(*) under AccessShare.
 *
 *   await countDataLoss(client, [`ALTER TABLE "profiles" DROP COLUMN "note"`])
 *   // [{ subject: "profiles.note", count: 1234, unit: "values" }]
 */
export async function countDataLoss(q: Queryable, statements: string[]): Promise<CountedLoss[]> {
  await loadSqlParser();
  const found: CountedLoss[] = [];
  const seen = new Set<string>();
  // What earlier statements of the stream did: a column renamed there is counted under its live
  // name; one the stream itself created holds none of the database's values yet.
  const liveName = new Map<string, string>();
  const created = new Set<string>();
  const live = (table: string, column: string) => liveName.get(`${table}.${column}`) ?? column;
  for (const sql of statements) {
    for (const a of describeSql(sql)) {
      if (a.kind === "rename-column") liveName.set(`${a.table}.${a.to}`, live(a.table, a.column));
      if (a.kind === "add-column") created.add(`${a.table}.${a.column}`);
      if (a.kind === "create-table") created.add(a.table);
      if (a.kind !== "drop-column" && a.kind !== "drop-table" && a.kind !== "truncate") continue;
      const subject = a.kind === "drop-column" ? `${a.table}.${a.column}` : a.table;
      if (seen.has(subject) || created.has(subject) || created.has(a.table)) continue;
      seen.add(subject);
      const column = a.kind === "drop-column" ? live(a.table, a.column) : "";
      const [row] = await rows<{ relation: string | null; present: boolean }>(q, `
        SELECT to_regclass($1)::text AS relation,
               EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass($1) AND attname = $2 AND attnum > 0 AND NOT attisdropped) AS present`,
        [qualifiedIdent(a.table), column]);
      if (!row.relation || (a.kind === "drop-column" && !row.present)) continue;
      const counted = a.kind === "drop-column"
        ? await rows<{ n: string }>(q, `SELECT count(${quoteIdent(column)}) AS n FROM ${qualifiedIdent(a.table)}`)
        : await rows<{ n: string }>(q, `SELECT count(*) AS n FROM ${qualifiedIdent(a.table)}`);
      const count = Number(counted[0].n);
      if (count > 0) found.push({ subject: subject.replace(/^public\./, ""), count, unit: a.kind === "drop-column" ? "values" : "rows" });
    }
  }
  return found;
}

/** `"public"."t"` / `"s"."t"`: quoted, so case is kept. */
function qualifiedIdent(table: string): string {
  const [schema, name] = table.includes(".") ? table.split(".") : ["public", table];
  return `${quoteIdent(schema)}.${quoteIdent(name)}`;
}
