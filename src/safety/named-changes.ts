// Renames and drops are said, never guessed. TypeORM cannot tell a renamed column from a dropped one
// and a new one: it writes DROP COLUMN + ADD (every value gone), or, when the column is its table's
// only change, guesses RENAME COLUMN. So `generate` takes both from the user:
//   --rename profiles.phone=phone_number   a column (table.old=new)
//   --rename old_table=new_table           a table
//   --drop profiles.note                   delete a column on purpose
// and refuses any DROP of a column (or TypeORM's own rename guess) that was not named, with one line
// that names it, the ADD that could be its rename, and both ways out. (TypeORM never drops a table
// no entity names: dropping one is a hand-written migration.)
import type { DbName } from "../databases";
import { MigrationError, UsageError } from "../errors";
import { quoteIdent } from "../postgres/sql";
import { describeSql } from "../postgres/sql-parse";

export type Rename = { kind: "column"; table: string; from: string; to: string } | { kind: "table"; from: string; to: string };
export interface Drop {
  table: string;
  column: string;
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

/** `profiles.note`: a column. */
export function parseDrop(spec: string): Drop {
  const parts = spec.trim().split(".");
  if (parts.length === 1 && IDENT.test(parts[0])) {
    throw new UsageError(`--drop ${spec}: generate never drops a table (TypeORM leaves a table no entity names alone): drop it in a hand-written migration (migration:create)`);
  }
  if (parts.length !== 2 || parts.some((p) => !IDENT.test(p))) throw new UsageError(`--drop ${spec}: expected table.column`);
  return { table: parts[0], column: parts[1] };
}

export const shownRename = (r: Rename) => (r.kind === "column" ? `${r.table}.${r.from}=${r.to}` : `${r.from}=${r.to}`);
export const shownDrop = (d: Drop) => `${d.table}.${d.column}`;

/** The named drop, as the diff is taken after it (the migration drops the column in its contract phase). */
export function dropStatement(d: Drop): string {
  return `ALTER TABLE ${quoteIdent(d.table)} DROP COLUMN ${quoteIdent(d.column)}`;
}

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
  /** Dropped and added again under the same name, in a way no in-place type change expresses (an enum, a serial). */
  recreatedColumns: Array<{ table: string; column: string }>;
  addedColumns: Array<{ table: string; column: string }>;
  createdTables: string[];
  /** TypeORM's rename guesses. */
  renames: Rename[];
}

/**
 * The shape of TypeORM's up. `typeChanges`: the DROP + ADD pairs the online plan turns into a type
 * change in place (values kept); any other drop of a column is a drop.
 */
export function diffShape(up: string[], typeChanges: Array<{ table: string; column: string }> = []): DiffShape {
  const shape: DiffShape = { droppedColumns: [], recreatedColumns: [], addedColumns: [], createdTables: [], renames: [] };
  for (const sql of up) {
    for (const a of describeSql(sql)) {
      if (a.kind === "drop-column") shape.droppedColumns.push({ table: bare(a.table), column: a.column });
      else if (a.kind === "add-column") shape.addedColumns.push({ table: bare(a.table), column: a.column });
      else if (a.kind === "create-table") shape.createdTables.push(bare(a.table));
      else if (a.kind === "rename-column") shape.renames.push({ kind: "column", table: bare(a.table), from: a.column, to: a.to });
      else if (a.kind === "rename-table") shape.renames.push({ kind: "table", from: bare(a.table), to: a.to });
    }
  }
  const key = (c: { table: string; column: string }) => `${c.table}.${c.column}`;
  const converted = new Set(typeChanges.map((t) => `${bare(t.table.replace(/"/g, ""))}.${t.column}`));
  const added = new Set(shape.addedColumns.map(key));
  const readded = new Set(shape.droppedColumns.filter((c) => added.has(key(c))).map(key)); // dropped and added under one name
  shape.recreatedColumns = shape.droppedColumns.filter((c) => readded.has(key(c)) && !converted.has(key(c)));
  shape.droppedColumns = shape.droppedColumns.filter((c) => !readded.has(key(c)));
  shape.addedColumns = shape.addedColumns.filter((c) => !readded.has(key(c)) && !shape.createdTables.includes(c.table));
  return shape;
}

/**
 * The drops and renames in TypeORM's diff that the user did not name (the named ones are done before
 * the diff is taken): one line each (without the database), naming what could be its rename and
 * both ways out. Empty: the diff may be written.
 */
export function unnamedChanges(shape: DiffShape): string[] {
  const lines: string[] = [];
  for (const r of shape.renames) {
    const said = r.kind === "column" ? `--rename ${r.table}.${r.from}=${r.to}` : `--rename ${r.from}=${r.to}`;
    const gone = r.kind === "column" ? `${r.table}.${r.from}` : r.from;
    lines.push(`TypeORM reads ${gone} -> ${r.kind === "column" ? `${r.table}.${r.to}` : r.to} as a rename, which is not trusted: say ${said} to rename it (values kept), or --drop ${gone} to delete it`);
  }
  for (const d of shape.droppedColumns) {
    const added = shape.addedColumns.filter((a) => a.table === d.table);
    if (added.length) {
      lines.push(`${d.table}.${d.column} would be dropped and ${added.map((x) => `${x.table}.${x.column}`).join(", ")} added: if it is a rename say --rename ${d.table}.${d.column}=${added[0].column}; to delete it say --drop ${d.table}.${d.column}`);
    } else {
      lines.push(`${d.table}.${d.column} would be dropped with its values: say --drop ${d.table}.${d.column} to delete it on purpose`);
    }
  }
  for (const c of shape.recreatedColumns) {
    lines.push(`${c.table}.${c.column}: TypeORM can change this type only by dropping and adding the column, which loses its values: write the conversion by hand (migration:create), or say --drop ${c.table}.${c.column} and add it again`);
  }
  return lines;
}

/** Throws the refusal: one line per unnamed change, each starting with the database. */
export function refuseUnnamed(lines: string[], db: DbName): void {
  if (!lines.length) return;
  throw new MigrationError(lines.join(`\n${db}: `), db);
}
