// The indexes a database has, read with PostgreSQL's own grammar (pg_get_indexdef parsed by
// libpg-query), for two questions TypeORM's diff cannot answer:
// - Which indexes are owned by migrations, not by the entities: TypeORM cannot declare an HNSW or
//   IVFFlat index with an operator class, an expression index, a partial one (its WHERE never
//   reads back equal), or INCLUDE columns. An index like that which an applied migration created
//   (`migration:create`, written by hand) is not generate's to drop, and not drift for check.
// - Which index an entity's new @Index duplicates (same table, columns, method, uniqueness and
//   predicate): a second copy costs every write and buys nothing.
import * as fs from "fs";
import type { Queryable } from "../postgres/sql";
import { rows } from "../postgres/sql";
import { describeSql, SqlAction } from "../postgres/sql-parse";
import type { MigrationFile } from "../runner/migration-files";

export interface IndexFacts {
  name: string;
  table: string;
  definition: string;
  method: string;
  columns: string[];
  unique: boolean;
  /** Why TypeORM cannot declare it (`using hnsw`, `operator class`, ...); empty when it can. */
  undeclarable: string[];
  /** Backs a constraint (primary key, unique, exclusion): the constraint owns it. */
  constraint: boolean;
}

type CreateIndex = Extract<SqlAction, { kind: "create-index" }>;

/** The index methods @Index({ type }) can say (TypeORM's TableIndexTypes). */
const DECLARABLE_METHODS = ["btree", "hash", "gist", "spgist", "gin", "brin"];

/** What about an index TypeORM's @Index cannot say. */
function undeclarable(a: CreateIndex, definition: string): string[] {
  return [
    DECLARABLE_METHODS.includes(a.method) ? "" : `using ${a.method}`,
    a.opclass ? "operator class" : "",
    a.expressions ? "expression" : "",
    a.where ? "partial" : "",
    / INCLUDE \(/.test(definition) ? "include" : "",
    / WITH \(/.test(definition) ? "storage options" : "",
  ].filter(Boolean);
}

/** Every index of the public schema's tables (extensions' own excluded). */
export async function readIndexes(q: Queryable): Promise<IndexFacts[]> {
  const found = await rows<{ name: string; tbl: string; def: string; con: boolean }>(q, `
    SELECT ic.relname AS name, c.relname AS tbl, pg_get_indexdef(i.indexrelid) AS def,
           EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid AND k.conrelid = i.indrelid) AS con
      FROM pg_index i
      JOIN pg_class ic ON ic.oid = i.indexrelid
      JOIN pg_class c ON c.oid = i.indrelid
      JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = 'public' AND c.relname NOT LIKE 'migrations%'
       AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
     ORDER BY 2, 1`);
  return found.flatMap((r) => {
    const a = describeSql(r.def)[0];
    if (a?.kind !== "create-index") return [];
    return [{ name: r.name, table: r.tbl, definition: r.def, method: a.method, columns: a.columns, unique: a.unique, undeclarable: undeclarable(a, r.def), constraint: r.con }];
  });
}

/** Whether one of `files` creates an index of this name (its source says `INDEX ... name`). */
export function createdByMigration(name: string, files: MigrationFile[], source: (f: MigrationFile) => string = (f) => fs.readFileSync(f.path, "utf8")): MigrationFile | undefined {
  const escaped = name.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  const pattern = new RegExp(`INDEX\\s+(?:CONCURRENTLY\\s+)?(?:IF\\s+NOT\\s+EXISTS\\s+)?(?:\\\\?"?public\\\\?"?\\.)?\\\\?"?${escaped}\\b`, "i");
  return files.find((f) => pattern.test(source(f)));
}

export interface ManagedIndex {
  name: string;
  table: string;
  /** `using hnsw, operator class`. */
  why: string;
  /** The migration that created it. */
  migration: string;
}

/**
 * The indexes owned by migrations: ones TypeORM cannot declare, created by one of the `applied`
 * migrations. `generate` leaves them alone and `check` lists them apart from drift.
 */
export function managedByMigrations(indexes: IndexFacts[], applied: MigrationFile[]): ManagedIndex[] {
  // Each source read once, and only when some index is one TypeORM cannot declare.
  const sources = new Map<MigrationFile, string>();
  const source = (f: MigrationFile) => sources.get(f) ?? sources.set(f, fs.readFileSync(f.path, "utf8")).get(f)!;
  return indexes.flatMap((i) => {
    if (i.constraint || !i.undeclarable.length) return [];
    const file = createdByMigration(i.name, applied, source);
    return file ? [{ name: i.name, table: i.table, why: i.undeclarable.join(", "), migration: file.name }] : [];
  });
}

/** Names as the live database has them, for a diff taken after renames. */
export interface LiveNames {
  table(table: string): string;
  column(table: string, column: string): string;
}

/** An existing index the `CREATE INDEX` statement would duplicate, if any. */
export function duplicatedBy(create: string, indexes: IndexFacts[], live?: LiveNames): IndexFacts | undefined {
  const a = describeSql(create)[0];
  if (a?.kind !== "create-index" || a.expressions || a.where) return undefined;
  const table = a.table.replace(/^public\./, "");
  const liveTable = live?.table(table) ?? table;
  const columns = a.columns.map((c) => live?.column(table, c) ?? c).join(",");
  return indexes.find((i) => i.table === liveTable && i.name !== a.name && i.method === a.method && i.unique === a.unique
    && !i.undeclarable.includes("partial") && !i.undeclarable.includes("expression") && i.columns.join(",") === columns);
}

interface Query {
  query: string;
}

/**
 * TypeORM's diff without what is not its to change: the DROP INDEX of an index migrations own (and
 * its CREATE in the down), and the CREATE INDEX of an index an existing one already is (named in
 * `duplicates`, `IDX_... duplicates idx_documents_status`). `generate` writes the rest; `check`
 * calls the rest drift.
 */
export function withoutForeignIndexes<Q extends Query>(diff: { up: Q[]; down: Q[] }, managed: ManagedIndex[], indexes: IndexFacts[], live?: LiveNames): { diff: { up: Q[]; down: Q[] }; duplicates: string[] } {
  const owned = new Set(managed.map((m) => m.name));
  // An index the same diff drops (renamed in the entity, say) is no twin of the one it creates.
  const dropped = new Set(diff.up.flatMap((q) => describeSql(q.query).flatMap((a) => (a.kind === "drop-index" ? [a.name.split(".").pop()!] : []))));
  const remaining = indexes.filter((i) => !dropped.has(i.name) || owned.has(i.name));
  const duplicates: string[] = [];
  const skipped = new Set<string>(); // index names whose up (and so whose down) is left out
  const indexName = (q: Query) => {
    const a = describeSql(q.query)[0];
    if (a?.kind === "drop-index") return { kind: a.kind, name: a.name.split(".").pop()! };
    if (a?.kind === "create-index" && a.name) return { kind: a.kind, name: a.name };
    return undefined;
  };
  const up = diff.up.filter((q) => {
    const i = indexName(q);
    if (i?.kind === "drop-index" && owned.has(i.name)) return !skipped.add(i.name);
    if (i?.kind === "create-index") {
      const twin = duplicatedBy(q.query, remaining, live);
      if (twin) {
        duplicates.push(`${i.name} duplicates ${twin.name}`);
        return !skipped.add(i.name);
      }
    }
    return true;
  });
  const down = diff.down.filter((q) => {
    const i = indexName(q);
    return !(i && skipped.has(i.name));
  });
  return { diff: { up, down }, duplicates };
}
