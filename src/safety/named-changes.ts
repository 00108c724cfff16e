// Renames and drops are said, never guessed. TypeORM cannot tell a renamed column from a dropped one
// and a new one: it writes DROP COLUMN + ADD (every value gone), or, when the column is its table's
// only change, guesses RENAME COLUMN. So `generate` takes both from the user:
//   --rename profiles.phone=phone_number   a column (table.old=new)
//   --rename old_table=new_table           a table
//   --drop profiles.note / --drop old_table  delete it on purpose
// and refuses any DROP of a column or table (or TypeORM's own rename guess) that was not named,
// with one line that names it, the ADD that could be its rename, and both ways out.
import type { DbName } from "../databases";
import { MigrationError, UsageError } from "../errors";
import { quoteIdent } from "../postgres/sql";
import { describeSql } from "../postgres/sql-parse";

export type Rename = { kind: "column"; table: string; from: string; to: string } | { kind: "table"; from: string; to: string };
export interface Drop {
  table: string;
  column?: string;
}

const IDENT = /^[A-Za-z_][A-Za-z0-9_$]*$/;

function checkIdent(name: string, flag: string, spec: string): string {
  if (!IDENT.test(name)) throw new UsageError(`${flag} ${spec}: "${name}" is not a table or column name`);
  return name;
}

/** `profiles.phone=phone_number` (a column) or `old=new` (a table). */
export function parseRename(spec: string): Rename {
  const m = /^([^=]+)=([^=]+)$/.exec(spec.trim());
  if (!m) throw new UsageError(`--rename ${spec}: expected table.old=new (a column) or old=new (a table)`);
  const [left, to] = [m[1].trim(), m[2].trim()];
  checkIdent(to, "--rename", spec);
  const parts = left.split(".");
  if (parts.length === 2) return { kind: "column", table: checkIdent(parts[0], "--rename", spec), from: checkIdent(parts[1], "--rename", spec), to };
  if (parts.length === 1) return { kind: "table", from: checkIdent(left, "--rename", spec), to };
  throw new UsageError(`--rename ${spec}: expected table.old=new (a column) or old=new (a table)`);
}

/** `profiles.note` (a column) or `old_table` (a table). */
export function parseDrop(spec: string): Drop {
  const parts = spec.trim().split(".");
  if (parts.length > 2 || parts.some((p) => !IDENT.test(p))) throw new UsageError(`--drop ${spec}: expected table.column or table`);
  return parts.length === 2 ? { table: parts[0], column: parts[1] } : { table: parts[0] };
}

export const shownRename = (r: Rename) => (r.kind === "column" ? `${r.table}.${r.from}=${r.to}` : `${r.from}=${r.to}`);
export const shownDrop = (d: Drop) => (d.column ? `${d.table}.${d.column}` : d.table);

/** The statement that makes the rename: the same in the diff's transaction and in the migration. */
export function renameStatement(r: Rename): { up: string; down: string } {
  if (r.kind === "column") {
    const t = quoteIdent(r.table);
    return { up: `ALTER TABLE ${t} RENAME COLUMN ${quoteIdent(r.from)} TO ${quoteIdent(r.to)}`, down: `ALTER TABLE ${t} RENAME COLUMN ${quoteIdent(r.to)} TO ${quoteIdent(r.from)}` };
  }
  return { up: `ALTER TABLE ${quoteIdent(r.from)} RENAME TO ${quoteIdent(r.to)}`, down: `ALTER TABLE ${quoteIdent(r.to)} RENAME TO ${quoteIdent(r.from)}` };
}

const bare = (table: string) => table.replace(/^public\./, "");

/** What TypeORM's up drops, adds and renames, by table (names unquoted, without `public.`). */
export interface DiffShape {
  droppedColumns: Array<{ table: string; column: string }>;
  addedColumns: Array<{ table: string; column: string }>;
  droppedTables: string[];
  createdTables: string[];
  /** TypeORM's rename guesses. */
  renames: Rename[];
}

export function diffShape(up: string[]): DiffShape {
  const shape: DiffShape = { droppedColumns: [], addedColumns: [], droppedTables: [], createdTables: [], renames: [] };
  for (const sql of up) {
    for (const a of describeSql(sql)) {
      if (a.kind === "drop-column") shape.droppedColumns.push({ table: bare(a.table), column: a.column });
      else if (a.kind === "add-column") shape.addedColumns.push({ table: bare(a.table), column: a.column });
      else if (a.kind === "drop-table") shape.droppedTables.push(bare(a.table));
      else if (a.kind === "create-table") shape.createdTables.push(bare(a.table));
      else if (a.kind === "rename-column") shape.renames.push({ kind: "column", table: bare(a.table), from: a.column, to: a.to });
      else if (a.kind === "rename-table") shape.renames.push({ kind: "table", from: bare(a.table), to: a.to });
    }
  }
  // A column TypeORM drops and adds again under the same name is a type change, not a drop.
  const readded = new Set(shape.addedColumns.map((c) => `${c.table}.${c.column}`));
  shape.droppedColumns = shape.droppedColumns.filter((c) => !readded.has(`${c.table}.${c.column}`));
  shape.addedColumns = shape.addedColumns.filter((c) => !shape.droppedColumns.some((d) => d.table === c.table && d.column === c.column) && !shape.createdTables.includes(c.table));
  return shape;
}

/**
 * The drops and renames in TypeORM's diff that the user did not name: one line each (without the
 * database), naming what could be its rename and both ways out. Empty: the diff may be written.
 */
export function unnamedChanges(shape: DiffShape, drops: Drop[]): string[] {
  const named = (table: string, column?: string) => drops.some((d) => d.table === table && d.column === column);
  const lines: string[] = [];
  for (const r of shape.renames) {
    const said = r.kind === "column" ? `--rename ${r.table}.${r.from}=${r.to}` : `--rename ${r.from}=${r.to}`;
    const gone = r.kind === "column" ? `${r.table}.${r.from}` : r.from;
    lines.push(`TypeORM reads ${gone} -> ${r.kind === "column" ? `${r.table}.${r.to}` : r.to} as a rename, which is not trusted: say ${said} to rename it (values kept), or --drop ${gone} to delete it`);
  }
  for (const d of shape.droppedColumns) {
    if (named(d.table, d.column)) continue;
    const added = shape.addedColumns.filter((a) => a.table === d.table);
    if (added.length) {
      const a = added[0];
      lines.push(`${d.table}.${d.column} would be dropped and ${added.map((x) => `${x.table}.${x.column}`).join(", ")} added: if it is a rename say --rename ${d.table}.${d.column}=${a.column}; to delete it say --drop ${d.table}.${d.column}`);
    } else {
      lines.push(`${d.table}.${d.column} would be dropped with its values: say --drop ${d.table}.${d.column} to delete it on purpose`);
    }
  }
  for (const t of shape.droppedTables) {
    if (named(t)) continue;
    const created = shape.createdTables;
    if (created.length) lines.push(`table ${t} would be dropped and ${created.join(", ")} created: if it is a rename say --rename ${t}=${created[0]}; to delete it say --drop ${t}`);
    else lines.push(`table ${t} would be dropped with its rows: say --drop ${t} to delete it on purpose`);
  }
  return lines;
}

/** A --drop that the diff does not drop is a mistake (a typo, or the entity still has it). */
export function unusedDrops(shape: DiffShape, drops: Drop[], db: DbName): void {
  for (const d of drops) {
    const used = d.column ? shape.droppedColumns.some((c) => c.table === d.table && c.column === d.column) : shape.droppedTables.includes(d.table);
    if (!used) throw new UsageError(`--drop ${shownDrop(d)}: the entities still have it, or it does not exist`, db);
  }
}

/** Throws the refusal: one line per unnamed change, each starting with the database. */
export function refuseUnnamed(lines: string[], db: DbName): void {
  if (!lines.length) return;
  throw new MigrationError(lines.join(`\n${db}: `), db);
}
