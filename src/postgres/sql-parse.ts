// SQL read with PostgreSQL's own grammar (libpg-query: PostgreSQL 17's parser compiled to
// WebAssembly, shipped inside the npm package), for what the tool must know exactly: which table,
// column, index or constraint a statement creates, renames or drops. Regexes over TypeORM's text
// cannot tell `DROP COLUMN` inside a string literal from a real one; the parse tree can.
// The parser loads once per process (`await loadSqlParser()`); after that everything is synchronous.
//
//   await loadSqlParser();
//   describeSql(`ALTER TABLE "profiles" DROP COLUMN "note", ADD "n" text`)
//   // [{ kind: "drop-column", table: "profiles", column: "note" }, { kind: "add-column", table: "profiles", column: "n" }]

// eslint-disable-next-line @typescript-eslint/no-require-imports
const pgQuery = require("libpg-query") as { loadModule(): Promise<void>; parseSync(sql: string): { stmts: RawStmt[] } };

interface RawStmt {
  stmt: Record<string, Node>;
  stmt_location?: number;
  stmt_len?: number;
}
// The parse tree is plain JSON: one key (the node type) per node.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Node = any;

let loaded: Promise<void> | undefined;

/** Loads the parser (once); every other function here needs it loaded. */
export function loadSqlParser(): Promise<void> {
  return (loaded ??= pgQuery.loadModule());
}

/** One thing a statement does to the schema. Names are unquoted; `table` has no schema when the statement gave none. */
export type SqlAction =
  | { kind: "create-table"; table: string }
  | { kind: "drop-table"; table: string }
  | { kind: "rename-table"; table: string; to: string }
  | { kind: "truncate"; table: string }
  | { kind: "add-column"; table: string; column: string; notNull: boolean; hasDefault: boolean }
  | { kind: "drop-column"; table: string; column: string }
  | { kind: "rename-column"; table: string; column: string; to: string }
  | { kind: "alter-column-type"; table: string; column: string }
  | { kind: "set-not-null"; table: string; column: string }
  | { kind: "create-index"; table: string; name?: string; method: string; columns: string[]; expressions: boolean; where: boolean; opclass: boolean; unique: boolean }
  | { kind: "drop-index"; name: string }
  | { kind: "add-constraint"; table: string; name?: string; type: string; notValid: boolean }
  | { kind: "drop-constraint"; table: string; name: string }
  | { kind: "enum-add-value"; type: string; value: string }
  | { kind: "other"; node: string };

function relationName(relation: Node): string {
  return relation.schemaname ? `${relation.schemaname}.${relation.relname}` : relation.relname;
}

function names(list: Node[] | undefined): string {
  return (list ?? []).map((n: Node) => n.String?.sval).filter(Boolean).join(".");
}

function isNotNull(columnDef: Node): boolean {
  return !!columnDef.is_not_null || (columnDef.constraints ?? []).some((c: Node) => c.Constraint?.contype === "CONSTR_NOTNULL" || c.Constraint?.contype === "CONSTR_PRIMARY");
}

function hasDefault(columnDef: Node): boolean {
  const type = names(columnDef.typeName?.names).replace(/^pg_catalog\./, "").toLowerCase();
  if (["serial", "serial4", "bigserial", "serial8", "smallserial", "serial2"].includes(type)) return true; // a sequence default
  return (columnDef.constraints ?? []).some((c: Node) => c.Constraint?.contype === "CONSTR_DEFAULT" || c.Constraint?.contype === "CONSTR_IDENTITY" || c.Constraint?.contype === "CONSTR_GENERATED");
}

const CONSTRAINT_TYPES: Record<string, string> = {
  CONSTR_CHECK: "CHECK", CONSTR_FOREIGN: "FOREIGN KEY", CONSTR_UNIQUE: "UNIQUE", CONSTR_PRIMARY: "PRIMARY KEY", CONSTR_EXCLUSION: "EXCLUDE",
};

function alterTableActions(node: Node): SqlAction[] {
  if (node.objtype && node.objtype !== "OBJECT_TABLE") return [{ kind: "other", node: "AlterTableStmt" }];
  const table = relationName(node.relation);
  return (node.cmds ?? []).map((c: Node): SqlAction => {
    const cmd = c.AlterTableCmd;
    switch (cmd.subtype) {
      case "AT_AddColumn": {
        const def = cmd.def.ColumnDef;
        return { kind: "add-column", table, column: def.colname, notNull: isNotNull(def), hasDefault: hasDefault(def) };
      }
      case "AT_DropColumn":
        return { kind: "drop-column", table, column: cmd.name };
      case "AT_AlterColumnType":
        return { kind: "alter-column-type", table, column: cmd.name };
      case "AT_SetNotNull":
        return { kind: "set-not-null", table, column: cmd.name };
      case "AT_AddConstraint": {
        const con = cmd.def.Constraint;
        return { kind: "add-constraint", table, name: con.conname, type: CONSTRAINT_TYPES[con.contype] ?? con.contype, notValid: !!con.skip_validation };
      }
      case "AT_DropConstraint":
        return { kind: "drop-constraint", table, name: cmd.name };
      default:
        return { kind: "other", node: cmd.subtype };
    }
  });
}

function actionsOf(stmt: Record<string, Node>): SqlAction[] {
  const [type] = Object.keys(stmt);
  const node = stmt[type];
  switch (type) {
    case "CreateStmt":
      return [{ kind: "create-table", table: relationName(node.relation) }];
    case "AlterTableStmt":
      return alterTableActions(node);
    case "DropStmt": {
      const objects: string[] = (node.objects ?? []).map((o: Node) => names(o.List?.items));
      if (node.removeType === "OBJECT_TABLE") return objects.map((table) => ({ kind: "drop-table", table }));
      if (node.removeType === "OBJECT_INDEX") return objects.map((name) => ({ kind: "drop-index", name }));
      return [{ kind: "other", node: node.removeType }];
    }
    case "TruncateStmt":
      return (node.relations ?? []).map((r: Node) => ({ kind: "truncate", table: relationName(r.RangeVar) }));
    case "RenameStmt":
      if (node.renameType === "OBJECT_COLUMN") return [{ kind: "rename-column", table: relationName(node.relation), column: node.subname, to: node.newname }];
      if (node.renameType === "OBJECT_TABLE") return [{ kind: "rename-table", table: relationName(node.relation), to: node.newname }];
      return [{ kind: "other", node: node.renameType }];
    case "IndexStmt": {
      const params: Node[] = (node.indexParams ?? []).map((p: Node) => p.IndexElem);
      return [{
        kind: "create-index", table: relationName(node.relation), name: node.idxname, method: node.accessMethod ?? "btree",
        columns: params.filter((p) => p.name).map((p) => p.name), expressions: params.some((p) => !p.name),
        where: !!node.whereClause, opclass: params.some((p) => (p.opclass ?? []).length > 0), unique: !!node.unique,
      }];
    }
    case "AlterEnumStmt":
      return node.newVal ? [{ kind: "enum-add-value", type: names(node.typeName), value: node.newVal }] : [{ kind: "other", node: type }];
    default:
      return [{ kind: "other", node: type }];
  }
}

/**
 * What each statement of `sql` does (one or more statements). A statement the parser refuses
 * gives `{ kind: "other", node: "unparsable" }`: the caller decides how careful to be.
 */
export function describeSql(sql: string): SqlAction[] {
  if (!loaded) throw new Error("describeSql: call loadSqlParser() first");
  let stmts: RawStmt[];
  try {
    stmts = pgQuery.parseSync(sql).stmts ?? [];
  } catch {
    return [{ kind: "other", node: "unparsable" }];
  }
  return stmts.flatMap((s) => actionsOf(s.stmt));
}
