// What a database's schema is, read from pg_catalog, and the readable differences between two of
// them. Used to prove a migrated database equals the legacy one, and to find drift.
// Bookkeeping tables (migrations*) are not part of the schema.
import { Queryable, rows } from "../postgres/sql";

export interface ColumnFacts {
  position: number;
  type: string;
  notNull: boolean;
  default: string | null;
  /** The default's value as text when it is a constant (no function call): equal values compare equal. */
  defaultValue: string | null;
}

export interface Catalog {
  extensions: string[];
  tables: string[];
  columns: Record<string, ColumnFacts>;
  constraints: Record<string, string>;
  indexes: Record<string, string>;
}


const USER_TABLES = `n.nspname = 'public' AND c.relkind IN ('r', 'p') AND c.relname NOT LIKE 'migrations%'`;

export async function readCatalog(q: Queryable): Promise<Catalog> {
  const extensions = await rows<{ extname: string }>(q, `SELECT extname FROM pg_extension ORDER BY 1`);
  const columns = await rows<{ tbl: string; col: string; pos: number; type: string; notnull: boolean; def: string | null }>(q, `
    SELECT c.relname AS tbl, a.attname AS col,
           row_number() OVER (PARTITION BY c.oid ORDER BY a.attnum)::int AS pos,
           format_type(a.atttypid, a.atttypmod) AS type, a.attnotnull AS notnull,
           pg_get_expr(d.adbin, d.adrelid) AS def
      FROM pg_attribute a
      JOIN pg_class c ON c.oid = a.attrelid
      JOIN pg_namespace n ON n.oid = c.relnamespace
      LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
     WHERE ${USER_TABLES} AND a.attnum > 0 AND NOT a.attisdropped
     ORDER BY 1, 3`);
  const constraints = await rows<{ tbl: string; name: string; def: string }>(q, `
    SELECT c.relname AS tbl, con.conname AS name, pg_get_constraintdef(con.oid) AS def
      FROM pg_constraint con
      JOIN pg_class c ON c.oid = con.conrelid
      JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE ${USER_TABLES}
     ORDER BY 1, 2`);
  const indexes = await rows<{ name: string; def: string }>(q, `
    SELECT ic.relname AS name, pg_get_indexdef(i.indexrelid) AS def
      FROM pg_index i
      JOIN pg_class ic ON ic.oid = i.indexrelid
      JOIN pg_class c ON c.oid = i.indrelid
      JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE ${USER_TABLES}
     ORDER BY 1`);

  // Constant defaults are evaluated once, together, so `ARRAY['user'::text]` equals `'{user}'::text[]`.
  const constants = columns.filter((c) => c.def !== null && !c.def.includes("("));
  const values = constants.length
    ? (await rows<{ v: string[] }>(q, `SELECT ARRAY[${constants.map((c) => `(${c.def})::text`).join(", ")}] AS v`))[0].v
    : [];
  const valueOf = new Map(constants.map((c, i) => [c, values[i]]));

  const catalog: Catalog = {
    extensions: extensions.map((e) => e.extname),
    tables: [...new Set(columns.map((c) => c.tbl))].sort(),
    columns: {},
    constraints: {},
    indexes: {},
  };
  for (const c of columns) {
    catalog.columns[`${c.tbl}.${c.col}`] = {
      position: c.pos, type: c.type, notNull: c.notnull, default: c.def, defaultValue: valueOf.get(c) ?? null,
    };
  }
  for (const c of constraints) catalog.constraints[`${c.tbl}.${c.name}`] = c.def;
  for (const i of indexes) catalog.indexes[i.name] = i.def;
  return catalog;
}

function sameDefault(a: ColumnFacts, b: ColumnFacts): boolean {
  if (a.default === b.default) return true;
  return a.defaultValue !== null && b.defaultValue !== null && a.defaultValue === b.defaultValue;
}

function keyedDiff(kind: string, actual: Record<string, string>, expected: Record<string, string>, label = (k: string) => k): string[] {
  const out: string[] = [];
  for (const [key, def] of Object.entries(expected)) {
    if (!(key in actual)) out.push(`${kind} ${label(key)} missing`);
    else if (actual[key] !== def) out.push(`${kind} ${label(key)} is ${actual[key]}, expected ${def}`);
  }
  for (const key of Object.keys(actual)) if (!(key in expected)) out.push(`${kind} ${label(key)} unexpected`);
  return out;
}

/** Readable differences of `actual` against `expected`, e.g. `index idx_documents_status missing`. */
/**
 * The differences of `actual` from `expected`, one readable line each. `columnOrder: false` leaves
 * column positions out: PostgreSQL cannot move a column, so a column an expand/contract or a revert
 * adds again comes back at the end; no client that names its columns can tell (check, rehearse).
 * Adopting the legacy schema (baseline) compares the order too.
 */
export function diffCatalogs(actual: Catalog, expected: Catalog, options: { columnOrder?: boolean } = {}): string[] {
  const out: string[] = [];
  for (const ext of expected.extensions) if (!actual.extensions.includes(ext)) out.push(`extension ${ext} missing`);
  for (const ext of actual.extensions) if (!expected.extensions.includes(ext)) out.push(`extension ${ext} unexpected`);
  for (const t of expected.tables) if (!actual.tables.includes(t)) out.push(`table ${t} missing`);
  for (const t of actual.tables) if (!expected.tables.includes(t)) out.push(`table ${t} unexpected`);

  const sharedTable = (key: string) => actual.tables.includes(key.split(".")[0]) && expected.tables.includes(key.split(".")[0]);
  for (const [key, want] of Object.entries(expected.columns)) {
    if (!sharedTable(key)) continue;
    const have = actual.columns[key];
    if (!have) {
      out.push(`column ${key} missing`);
      continue;
    }
    if (have.type !== want.type) out.push(`${key} type ${have.type}, expected ${want.type}`);
    if (have.notNull !== want.notNull) out.push(`${key} ${have.notNull ? "NOT NULL" : "nullable"}, expected ${want.notNull ? "NOT NULL" : "nullable"}`);
    if (!sameDefault(have, want)) out.push(`${key} default ${have.default ?? "none"}, expected ${want.default ?? "none"}`);
    if (options.columnOrder !== false && have.position !== want.position) out.push(`${key} at position ${have.position}, expected ${want.position}`);
  }
  for (const key of Object.keys(actual.columns)) {
    if (sharedTable(key) && !expected.columns[key]) out.push(`column ${key} unexpected`);
  }
  const byTable = (k: string) => k.split(".").slice(1).join(".") + ` on ${k.split(".")[0]}`;
  out.push(...keyedDiff("constraint", actual.constraints, expected.constraints, byTable));
  out.push(...keyedDiff("index", actual.indexes, expected.indexes));
  return out;
}
