// Enum changes that TypeORM writes so that their down cannot run. Adding a value, TypeORM's up is
// `ALTER TYPE ... ADD VALUE 'v'` (fine, but squawk's require-enum-value-ordering wants the place
// said), and its down re-creates the old type and converts the column to it, which always fails on
// a column with a default (`default for column "priority" cannot be cast automatically`) and on a
// row holding the new value. Here the up says where the value goes (AFTER its predecessor in the
// entity's list, so the type's order is the entity's), and the down is written from the database:
// it refuses with one line while rows hold a value it would remove (no down can keep them), drops
// each column's default before the conversion and sets it again after.
//
// Removing a value (TypeORM: rename the type, create the new one, convert the columns) needs no
// rewrite of its down; the rows that still hold a removed value are counted at generate time
// (live-checks), since its up would fail on them.
import type { DataSource } from "typeorm";
import { Queryable, quoteIdent, rows } from "../postgres/sql";
import type { Part } from "./online-ddl";
import type { Statement } from "./typeorm-statements";

const ADD_VALUE = /^ALTER TYPE ("[^"]+"\."([^"]+)"|"([^"]+)") ADD VALUE '((?:[^']|'')*)'$/;

const literal = (v: string) => `'${v.replace(/'/g, "''")}'`;

/** A column whose type is the enum (or an array of it), with its default as written in the catalog. */
interface EnumColumn {
  table: string;
  column: string;
  array: boolean;
  default: string | null;
}

/** The enum's values in the database, in order, and the columns that use it. */
async function enumFacts(q: Queryable, typePath: string): Promise<{ values: string[]; columns: EnumColumn[] } | undefined> {
  const [t] = await rows<{ oid: number; arr: number }>(q, `SELECT t.oid::int AS oid, t.typarray::int AS arr FROM pg_type t WHERE t.oid = to_regtype($1)`, [typePath]);
  if (!t) return undefined;
  const values = (await rows<{ v: string }>(q, `SELECT enumlabel AS v FROM pg_enum WHERE enumtypid = $1 ORDER BY enumsortorder`, [t.oid])).map((r) => r.v);
  const columns = await rows<{ tbl: string; col: string; arr: boolean; def: string | null }>(q, `
    SELECT c.relname AS tbl, a.attname AS col, a.atttypid = $2 AS arr, pg_get_expr(d.adbin, d.adrelid) AS def
      FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
      LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
     WHERE a.atttypid IN ($1, $2) AND a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'p')
     ORDER BY 1, 2`, [t.oid, t.arr]);
  return { values, columns: columns.map((c) => ({ table: c.tbl, column: c.col, array: c.arr, default: c.def })) };
}

/** The entity's list of values for the enum type `name` (TypeORM's `<table>_<column>_enum` unless named). */
function entityValues(dataSource: DataSource, name: string): string[] | undefined {
  for (const m of dataSource.entityMetadatas) {
    for (const c of m.columns) {
      if (!c.enum) continue;
      const typeName = c.enumName ?? `${m.tableName}_${c.databaseName.toLowerCase()}_enum`;
      if (typeName === name) return c.enum.map(String);
    }
  }
  return undefined;
}

/** The down that takes an enum back to `oldValues`: refuses while rows hold another value. */
function enumDown(typePath: string, typeName: string, oldValues: string[], added: string[], columns: EnumColumn[]): Statement[] {
  const oldPath = typePath.replace(/"([^"]+)"$/, (_m, n: string) => `"${n}_old"`);
  const list = oldValues.map(literal).join(", ");
  const out: Statement[] = [];
  const checks = columns.map((c) => {
    const col = quoteIdent(c.column);
    const where = c.array ? `NOT (${col}::text[] <@ ARRAY[${list}]::text[])` : `${col}::text NOT IN (${list})`;
    // The message is a parameter of RAISE, not its format: a % in a value stays a %.
    const message = literal(`${c.table}.${c.column}: ${"{n}"} rows hold a value this down removes from ${typeName} (${added.join(", ")}): change them first`);
    return `  SELECT count(*) INTO n FROM ${quoteIdent(c.table)} WHERE ${where};
  IF n > 0 THEN RAISE EXCEPTION '%', replace(${message}, '{n}', n::text); END IF;`;
  });
  if (checks.length) {
    out.push({
      query: `DO $migration_enum_down$ DECLARE n bigint; BEGIN\n${checks.join("\n")}\nEND $migration_enum_down$`,
      comment: "PostgreSQL cannot remove an enum value: the type is made again without it, which cannot hold rows that use it.",
    });
  }
  for (const c of columns) if (c.default !== null) out.push({ query: `ALTER TABLE ${quoteIdent(c.table)} ALTER COLUMN ${quoteIdent(c.column)} DROP DEFAULT` });
  out.push({ query: `CREATE TYPE ${oldPath} AS ENUM(${list})` });
  for (const c of columns) {
    const col = quoteIdent(c.column);
    const cast = c.array ? `${col}::text[]::${oldPath}[]` : `${col}::text::${oldPath}`;
    out.push({ query: `ALTER TABLE ${quoteIdent(c.table)} ALTER COLUMN ${col} TYPE ${oldPath}${c.array ? "[]" : ""} USING ${cast}` });
  }
  for (const c of columns) {
    // `'low'::t_priority_enum` names the type being replaced: the literal alone takes the column's type.
    if (c.default !== null) out.push({ query: `ALTER TABLE ${quoteIdent(c.table)} ALTER COLUMN ${quoteIdent(c.column)} SET DEFAULT ${c.default.replace(/::[\w."[\]]+$/, "")}` });
  }
  out.push({ query: `DROP TYPE ${typePath}` });
  out.push({ query: `ALTER TYPE ${oldPath} RENAME TO "${typeName}"` });
  return out;
}

/**
 * Takes TypeORM's ADD VALUE changes out of its diff and writes them as they should be. `rest` is the
 * diff without them (its up and down pair up again); `part` goes first in the transaction part.
 */
export async function fixEnumAdditions(dataSource: DataSource, diff: Part): Promise<{ rest: Part; part: Part; added: Array<{ type: string; value: string }> }> {
  const additions = new Map<string, { name: string; values: string[] }>();
  for (const s of diff.up) {
    const m = ADD_VALUE.exec(s.query.trim());
    if (!m) continue;
    const path = m[1];
    const entry = additions.get(path) ?? { name: m[2] ?? m[3], values: [] };
    const value = m[4].replace(/''/g, "'");
    if (!entry.values.includes(value)) entry.values.push(value); // a type shared by columns is named once per column
    additions.set(path, entry);
  }
  if (!additions.size) return { rest: diff, part: { up: [], down: [] }, added: [] };
  const part: Part = { up: [], down: [] };
  let down = diff.down;
  for (const [path, { name, values }] of additions) {
    const facts = await enumFacts(dataSource, path.replace(/"/g, ""));
    if (!facts) continue;
    const order = entityValues(dataSource, name) ?? [...facts.values, ...values];
    const known = [...facts.values];
    for (const v of values) {
      const at = order.indexOf(v);
      const before = order.slice(0, at).reverse().find((x) => known.includes(x));
      const after = order.slice(at + 1).find((x) => known.includes(x));
      const place = before !== undefined ? ` AFTER ${literal(before)}` : after !== undefined ? ` BEFORE ${literal(after)}` : "";
      part.up.push({ query: `ALTER TYPE ${path} ADD VALUE ${literal(v)}${place}` });
      known.push(v);
    }
    // TypeORM's down for it: CREATE TYPE <t>_old, ALTER COLUMN ... TYPE <t>_old, DROP TYPE <t>, RENAME.
    const oldPath = path.replace(/"([^"]+)"$/, (_m, n: string) => `"${n}_old"`);
    down = down.filter((s) => !s.query.includes(oldPath) && s.query.trim() !== `DROP TYPE ${path}`);
    part.down.unshift(...enumDown(path, name, facts.values, values, facts.columns));
  }
  const added = [...additions.values()].flatMap((a) => a.values.map((value) => ({ type: a.name, value })));
  return { rest: { up: diff.up.filter((s) => !ADD_VALUE.test(s.query.trim())), down }, part, added };
}

/**
 * The values TypeORM's diff removes from enum types (it re-creates the type without them), with the
 * columns that use the type: rows holding one of them stop the migration.
 */
export async function removedEnumValues(q: Queryable, up: string[]): Promise<Array<{ type: string; values: string[]; columns: EnumColumn[] }>> {
  const out: Array<{ type: string; values: string[]; columns: EnumColumn[] }> = [];
  for (const sql of up) {
    const m = /^CREATE TYPE ("[^"]+"\."([^"]+)"|"([^"]+)") AS ENUM\((.*)\)$/.exec(sql.trim());
    if (!m || !up.some((s) => s.startsWith(`ALTER TYPE ${m[1]} RENAME TO `))) continue;
    const facts = await enumFacts(q, m[1].replace(/"/g, ""));
    if (!facts) continue;
    const kept = [...m[4].matchAll(/'((?:[^']|'')*)'/g)].map((x) => x[1].replace(/''/g, "'"));
    const values = facts.values.filter((v) => !kept.includes(v));
    if (values.length) out.push({ type: m[2] ?? m[3], values, columns: facts.columns });
  }
  return out;
}
