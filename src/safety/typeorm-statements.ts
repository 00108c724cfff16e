// The DDL statements TypeORM's PostgreSQL driver writes into a generated migration, recognized by
// their exact shape (PostgresQueryRunner's create...Sql / drop...Sql builders), so the online-safe
// rewrites can take them apart. Anything of another shape is not recognized and left as it is.
//
//   parseStatement(`CREATE INDEX "idx_a" ON "t"  ("a") `)
//   // { kind: "create-index", name: "idx_a", table: '"t"', unique: false, concurrently: false, rest: '("a")' }

/** A statement of a migration, the shape of TypeORM's `Query`. */
export interface Statement {
  query: string;
  parameters?: unknown[];
  /** A comment written above the statement in the migration file. */
  comment?: string;
}

/** A quoted name or schema-qualified name as TypeORM writes it: `"t"` or `"s"."t"`. */
const PATH = `"[^"]+"(?:\\."[^"]+")?`;
const NAME = `"([^"]+)"`;

export type Parsed =
  | { kind: "create-table"; table: string }
  | { kind: "drop-table"; table: string }
  | { kind: "create-view"; table: string }
  | { kind: "create-index"; name: string; table: string; unique: boolean; concurrently: boolean; rest: string }
  | { kind: "drop-index"; path: string; name: string; concurrently: boolean; ifExists: boolean }
  | { kind: "add-constraint"; table: string; name: string; type: "FOREIGN KEY" | "CHECK" | "UNIQUE" | "PRIMARY KEY" | "EXCLUDE"; rest: string; notValid: boolean }
  | { kind: "drop-constraint"; table: string; name: string }
  | { kind: "add-column"; table: string; column: string; definition: string }
  | { kind: "drop-column"; table: string; column: string; ifExists: boolean }
  | { kind: "set-not-null"; table: string; column: string }
  | { kind: "other" };

const patterns: Array<[RegExp, (m: RegExpExecArray) => Parsed]> = [
  [new RegExp(`^CREATE TABLE (${PATH}) \\(`), (m) => ({ kind: "create-table", table: m[1] })],
  [new RegExp(`^DROP TABLE (${PATH})$`), (m) => ({ kind: "drop-table", table: m[1] })],
  [new RegExp(`^CREATE (?:MATERIALIZED )?VIEW (${PATH}) `), (m) => ({ kind: "create-view", table: m[1] })],
  [
    new RegExp(`^CREATE (UNIQUE )?INDEX( CONCURRENTLY)? ${NAME} ON (${PATH}) ([\\s\\S]*)$`),
    (m) => ({ kind: "create-index", unique: !!m[1], concurrently: !!m[2], name: m[3], table: m[4], rest: m[5].trim() }),
  ],
  [
    new RegExp(`^DROP INDEX( CONCURRENTLY)?( IF EXISTS)? ((?:"[^"]+"\\.)?${NAME})$`),
    (m) => ({ kind: "drop-index", concurrently: !!m[1], ifExists: !!m[2], path: m[3], name: m[4] }),
  ],
  [
    new RegExp(`^ALTER TABLE (${PATH}) ADD CONSTRAINT ${NAME} (FOREIGN KEY|CHECK|UNIQUE|PRIMARY KEY|EXCLUDE) ([\\s\\S]*)$`),
    (m) => ({ kind: "add-constraint", table: m[1], name: m[2], type: m[3] as "CHECK", rest: m[4], notValid: /\sNOT VALID$/.test(m[4]) }),
  ],
  [new RegExp(`^ALTER TABLE (${PATH}) DROP CONSTRAINT ${NAME}$`), (m) => ({ kind: "drop-constraint", table: m[1], name: m[2] })],
  [new RegExp(`^ALTER TABLE (${PATH}) DROP COLUMN( IF EXISTS)? ${NAME}$`), (m) => ({ kind: "drop-column", table: m[1], ifExists: !!m[2], column: m[3] })],
  [new RegExp(`^ALTER TABLE (${PATH}) ALTER COLUMN ${NAME} SET NOT NULL$`), (m) => ({ kind: "set-not-null", table: m[1], column: m[2] })],
  [new RegExp(`^ALTER TABLE (${PATH}) ADD ${NAME} ([\\s\\S]+)$`), (m) => ({ kind: "add-column", table: m[1], column: m[2], definition: m[3] })],
];

export function parseStatement(query: string): Parsed {
  for (const [pattern, build] of patterns) {
    const m = pattern.exec(query);
    if (m) return build(m);
  }
  return { kind: "other" };
}

/** The same statement up to spacing and PostgreSQL's default index method (TypeORM reads indexes back with `USING btree`). */
export function sameStatement(a: string, b: string): boolean {
  const norm = (s: string) => s.replace(/ USING btree /g, " ").replace(/\s+/g, " ").replace(/\( /g, "(").trim();
  return norm(a) === norm(b);
}

/** `"s"."t"` -> `s.t`, `"t"` -> `t`: for messages. */
export function shownPath(path: string): string {
  return path.replace(/"/g, "");
}

/**
 * A column definition as TypeORM writes it after the column name in `ADD "c" ...`
 * (buildCreateColumnSql): type, then NOT NULL, then DEFAULT. Undefined for definitions a plain
 * type change cannot express (generated, identity and serial columns, collations, enums).
 *
 *   parseColumnDefinition(`character varying(20) NOT NULL DEFAULT 'x'`)
 *   // { type: "character varying(20)", notNull: true, default: "'x'" }
 */
export function parseColumnDefinition(definition: string): { type: string; notNull: boolean; default?: string } | undefined {
  const m = /^(.+?)( NOT NULL)?(?: DEFAULT ([\s\S]+))?$/.exec(definition.trim());
  if (!m) return undefined;
  const type = m[1];
  if (/\b(GENERATED|SERIAL|SMALLSERIAL|BIGSERIAL|COLLATE|CHARACTER SET)\b/.test(type) || type.includes('"')) return undefined;
  return { type, notNull: !!m[2], default: m[3] };
}
