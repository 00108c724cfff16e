// The schema of the three databases as documentation: `describeSchema()` reads it from the entities
// (TypeORM's own metadata, built offline: no database), `renderSchemaDocs()` turns it into the
// Markdown of docs/schema.md, a Mermaid ER diagram and a column table per table. Both are pure and
// deterministic (tables by name, columns in table order, indexes and constraints by name), so the
// same entities give the same bytes.
//
//   const md = renderSchemaDocs();                       // what `npm run schema:docs` writes
//   const users = describeSchema()[0].tables[0];         // { name: "users", columns: [...], ... }
import "reflect-metadata";
import { DataSource, getMetadataArgsStorage } from "typeorm";
import type { ColumnMetadata } from "typeorm/metadata/ColumnMetadata";
import type { EntityMetadata } from "typeorm/metadata/EntityMetadata";
import { EntityMetadataBuilder } from "typeorm/metadata-builder/EntityMetadataBuilder";
import { EntityMetadataValidator } from "typeorm/metadata-builder/EntityMetadataValidator";
import type { PostgresDriver } from "typeorm/driver/postgres/PostgresDriver";
import { DATABASES, DbName } from "../databases";
import { ENTITIES } from "../postgres/data-source";

export interface ColumnDoc {
  name: string;
  /** As PostgreSQL names it (`format_type`): `character varying(255)`, `text[]`, `timestamp without time zone`. */
  type: string;
  nullable: boolean;
  /** The default expression as the migrations write it (`'active'`, `now()`, `'0'`), or null. */
  default: string | null;
  primary: boolean;
  /** In a unique constraint or unique index. */
  unique: boolean;
  /** The column's foreign key target, e.g. `{ table: "knowledge_bases", column: "id" }`. */
  references: { table: string; column: string } | null;
  /** The entity's `comment` option. */
  comment: string | null;
}

export interface IndexDoc {
  name: string;
  columns: string[];
  unique: boolean;
  /** The access method when it is not btree (`gin`, `gist`). */
  method: string | null;
  where: string | null;
  /**
   * Declared with `@Index(name, columns, { synchronize: false })`: a migration built it (an HNSW
   * index with an operator class, say), and generate leaves it alone.
   */
  managed: boolean;
}

export interface ConstraintDoc {
  kind: "primary key" | "unique" | "foreign key" | "check";
  name: string;
  columns: string[];
  /** Foreign keys: the target and the actions (`NO ACTION` when not set). */
  references?: { table: string; columns: string[]; onDelete: string; onUpdate: string };
  /** Checks: the expression as written in the entity. */
  expression?: string;
}

export interface TableDoc {
  name: string;
  columns: ColumnDoc[];
  indexes: IndexDoc[];
  constraints: ConstraintDoc[];
}

export interface DatabaseDoc {
  db: DbName;
  tables: TableDoc[];
}

/**
 * Defaults the shipped migrations set by hand where TypeORM would write another one (the entities'
 * comments say why). The schema-docs test checks every default here against a migrated database.
 */
const HAND_WRITTEN_DEFAULTS: Record<string, string> = {
  "admindb.langchain_pg_collection.uuid": "gen_random_uuid()",
  "admindb.langchain_pg_embedding.uuid": "gen_random_uuid()",
};

const CONSTRAINT_ORDER: ConstraintDoc["kind"][] = ["primary key", "unique", "foreign key", "check"];

const byName = <T extends { name: string }>(a: T, b: T) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);

/** TypeORM's metadata of one database's entities, built the way `DataSource.initialize()` does, without connecting. */
function entityMetadatas(entities: Function[]): { metadatas: EntityMetadata[]; dataSource: DataSource } {
  const dataSource = new DataSource({ type: "postgres", entities, installExtensions: false, synchronize: false });
  const metadatas = new EntityMetadataBuilder(dataSource, getMetadataArgsStorage()).build(entities);
  new EntityMetadataValidator().validateMany(metadatas, dataSource.driver);
  return { metadatas, dataSource };
}

/** The column's type as PostgreSQL's `format_type` shows it once the migrations created it. */
function columnType(column: ColumnMetadata, driver: PostgresDriver): string {
  let type = driver.normalizeType(column);
  if (type === "enum" || type === "simple-enum") {
    type = column.enumName ?? `${column.entityMetadata.tableName}_${column.databaseName}_enum`;
  } else if (column.length) {
    type += `(${column.length})`;
  } else if (column.precision !== null && column.precision !== undefined) {
    const args = column.scale !== null && column.scale !== undefined ? `${column.precision},${column.scale}` : `${column.precision}`;
    // `timestamp(3) without time zone`: the precision goes after the first word.
    const zone = /^(timestamp|time)( with(out)? time zone)$/.exec(type);
    type = zone ? `${zone[1]}(${args})${zone[2]}` : `${type}(${args})`;
  }
  return column.isArray ? `${type}[]` : type;
}

function columnDefault(db: DbName, column: ColumnMetadata, driver: PostgresDriver): string | null {
  const table = column.entityMetadata.tableName;
  const byHand = HAND_WRITTEN_DEFAULTS[`${db}.${table}.${column.databaseName}`];
  if (byHand) return byHand;
  if (column.isGenerated) {
    if (column.generationStrategy === "uuid") return driver.uuidGenerator;
    if (column.generationStrategy === "increment") {
      return column.generatedIdentity
        ? `generated ${column.generatedIdentity.toLowerCase()} as identity`
        : `nextval('${table}_${column.databaseName}_seq'::regclass)`;
    }
  }
  return driver.normalizeDefault(column) ?? null;
}

function describeTable(db: DbName, metadata: EntityMetadata, dataSource: DataSource): TableDoc {
  const driver = dataSource.driver as PostgresDriver;
  const table = metadata.tableName;
  const names = (columns: ColumnMetadata[]) => columns.map((c) => c.databaseName);

  const indexes: IndexDoc[] = metadata.indices.map((index) => ({
    name: index.name,
    columns: names(index.columns),
    unique: index.isUnique,
    method: index.isSpatial ? "gist" : index.type && index.type.toLowerCase() !== "btree" ? index.type.toLowerCase() : null,
    where: index.where ?? null,
    managed: index.synchronize === false,
  }));

  const primary = metadata.primaryColumns;
  const constraints: ConstraintDoc[] = [];
  if (primary.length) {
    constraints.push({
      kind: "primary key",
      name: primary[0].primaryKeyConstraintName ?? dataSource.namingStrategy.primaryKeyName(table, names(primary)),
      columns: names(primary),
    });
  }
  for (const unique of metadata.uniques) constraints.push({ kind: "unique", name: unique.name, columns: names(unique.columns) });
  for (const fk of metadata.foreignKeys) {
    constraints.push({
      kind: "foreign key",
      name: fk.name,
      columns: [...fk.columnNames],
      references: {
        table: fk.referencedTablePath,
        columns: [...fk.referencedColumnNames],
        onDelete: fk.onDelete ?? "NO ACTION",
        onUpdate: fk.onUpdate ?? "NO ACTION",
      },
    });
  }
  for (const check of metadata.checks) constraints.push({ kind: "check", name: check.name, columns: [], expression: check.expression });
  constraints.sort((a, b) => CONSTRAINT_ORDER.indexOf(a.kind) - CONSTRAINT_ORDER.indexOf(b.kind) || byName(a, b));

  const uniqueColumns = new Set([
    ...constraints.filter((c) => c.kind === "unique").flatMap((c) => c.columns),
    ...indexes.filter((i) => i.unique).flatMap((i) => i.columns),
  ]);
  const columns: ColumnDoc[] = metadata.columns.map((column) => {
    const fk = metadata.foreignKeys.find((f) => f.columnNames.length === 1 && f.columnNames[0] === column.databaseName);
    return {
      name: column.databaseName,
      type: columnType(column, driver),
      nullable: column.isNullable,
      default: columnDefault(db, column, driver),
      primary: column.isPrimary,
      unique: uniqueColumns.has(column.databaseName),
      references: fk ? { table: fk.referencedTablePath, column: fk.referencedColumnNames[0] } : null,
      comment: column.comment ?? null,
    };
  });

  return { name: table, columns, indexes: indexes.sort(byName), constraints };
}

/** Every database's tables, from the entities, in the order authdb, apidb, admindb; tables by name. */
export function describeSchema(): DatabaseDoc[] {
  return DATABASES.map((db) => {
    const { metadatas, dataSource } = entityMetadatas(ENTITIES[db]);
    const tables = metadatas
      .filter((m) => m.tableType === "regular")
      .map((m) => describeTable(db, m, dataSource))
      .sort(byName);
    return { db, tables };
  });
}

// ---- Rendering ----------------------------------------------------------------------------------

/** A Mermaid erDiagram attribute type: one token (`varchar_255`, `text_array`, `timestamptz`). */
export function mermaidType(type: string): string {
  const short = type
    .replace(/^character varying/, "varchar")
    .replace(/^character\b/, "char")
    .replace(/^double precision/, "float8")
    .replace(/^(timestamp|time)(\(\d+\))? with time zone/, "$1tz$2")
    .replace(/^(timestamp|time)(\(\d+\))? without time zone/, "$1$2")
    .replace(/\[\]$/, "_array");
  return short.replace(/[^A-Za-z0-9_]+/g, "_").replace(/^_+|_+$/g, "");
}

/** Text safe inside a Mermaid comment (double quotes cannot be escaped there). */
function mermaidText(text: string): string {
  return text.replace(/"/g, "'").replace(/\s+/g, " ").trim();
}

function mermaidBlock(database: DatabaseDoc): string[] {
  const lines = ["```mermaid", "erDiagram"];
  for (const table of database.tables) {
    lines.push(`    ${table.name} {`);
    for (const column of table.columns) {
      const keys = [column.primary && "PK", column.references && "FK", column.unique && "UK"].filter(Boolean).join(", ");
      const comment = column.comment ?? (column.references ? `references ${column.references.table}.${column.references.column}` : null);
      lines.push(`        ${mermaidType(column.type)} ${column.name}${keys ? ` ${keys}` : ""}${comment ? ` "${mermaidText(comment)}"` : ""}`);
    }
    lines.push("    }");
  }
  // One relationship per foreign key, parent first: a nullable key means zero or one parent (|o),
  // a unique key at most one child (o|).
  for (const table of database.tables) {
    for (const fk of table.constraints.filter((c) => c.kind === "foreign key")) {
      const columns = fk.columns.map((name) => table.columns.find((c) => c.name === name)!);
      const parent = columns.some((c) => c.nullable) ? "|o" : "||";
      const oneChild = table.constraints.some((c) => (c.kind === "unique" || c.kind === "primary key") && sameSet(c.columns, fk.columns))
        || table.indexes.some((i) => i.unique && !i.where && sameSet(i.columns, fk.columns));
      lines.push(`    ${fk.references!.table} ${parent}--${oneChild ? "o|" : "o{"} ${table.name} : "${mermaidText(fk.columns.join(", "))}"`);
    }
  }
  lines.push("```");
  return lines;
}

function sameSet(a: string[], b: string[]): boolean {
  return a.length === b.length && a.every((x) => b.includes(x));
}

/** An inline code span, safe inside a Markdown table cell. */
function code(text: string): string {
  const escaped = text.replace(/\|/g, "\\|");
  return escaped.includes("`") ? `\`\` ${escaped} \`\`` : `\`${escaped}\``;
}

function columnList(columns: string[]): string {
  return `(${columns.join(", ")})`;
}

function indexLine(index: IndexDoc): string {
  const details = [index.unique && "unique", index.method && `using ${index.method}`, index.where && `where ${code(index.where)}`, index.managed && "built by a migration"].filter(Boolean);
  // `@Index(name, { synchronize: false })` names no columns: only the migration knows them.
  const columns = index.columns.length ? ` ${columnList(index.columns)}` : "";
  return `${code(index.name)}${columns}${details.length ? ` ${details.join(", ")}` : ""}`;
}

function constraintLine(constraint: ConstraintDoc): string {
  switch (constraint.kind) {
    case "primary key":
    case "unique":
      return `${constraint.kind} ${code(constraint.name)} ${columnList(constraint.columns)}`;
    case "foreign key": {
      const ref = constraint.references!;
      const actions = [
        ref.onDelete !== "NO ACTION" && `on delete ${ref.onDelete.toLowerCase()}`,
        ref.onUpdate !== "NO ACTION" && `on update ${ref.onUpdate.toLowerCase()}`,
      ].filter(Boolean);
      return `foreign key ${code(constraint.name)} ${columnList(constraint.columns)} references ${code(ref.table)} ${columnList(ref.columns)}`
        + (actions.length ? ` ${actions.join(", ")}` : "");
    }
    case "check":
      return `check ${code(constraint.name)}: ${code(constraint.expression!)}`;
  }
}

function tableSection(table: TableDoc): string[] {
  const lines = [`### ${table.name}`, "", "| column | type | null | default |", "|---|---|---|---|"];
  for (const column of table.columns) {
    lines.push(`| ${code(column.name)} | ${code(column.type)} | ${column.nullable ? "yes" : "no"} | ${column.default === null ? "" : code(column.default)} |`);
  }
  lines.push("");
  lines.push(`Indexes: ${table.indexes.length ? table.indexes.map(indexLine).join("; ") : "none"}.`);
  lines.push("");
  lines.push(`Constraints: ${table.constraints.length ? table.constraints.map(constraintLine).join("; ") : "none"}.`);
  return lines;
}

export const SCHEMA_DOCS_HEADER =
  "> Generated by `npm run schema:docs` from the entities in `src/entities/`. Do not edit by hand: change the entities, then run `npm run schema:docs`.";

/** The whole of docs/schema.md, byte for byte. */
export function renderSchemaDocs(databases: DatabaseDoc[] = describeSchema()): string {
  const lines = [
    "# Database schema",
    "",
    SCHEMA_DOCS_HEADER,
    "",
    "Per database: an ER diagram (PK primary key, FK foreign key, UK unique), then each table's columns",
    "with their PostgreSQL types, nullability and defaults as the migrations create them, its indexes and",
    "its constraints under their legacy names.",
  ];
  for (const database of databases) {
    lines.push("", `## ${database.db}`, "", ...mermaidBlock(database));
    for (const table of database.tables) lines.push("", ...tableSection(table));
  }
  return lines.join("\n") + "\n";
}
