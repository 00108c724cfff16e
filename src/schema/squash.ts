// Squashing: the schema a run of migrations builds, replayed in a shadow database and written out
// by pg_dump as one migration. Everything the migrations made is in it, including what entities
// cannot say (extensions, hand-written indexes, functions, triggers) and the rows they inserted
// (e.g. system_settings' defaults, as INSERTs). Its down drops what its up built.
import type { DbTarget } from "../config";
import type { DbName } from "../databases";
import { MigrationError } from "../errors";
import { findPgTool, firstError, pgEnv, runPgTool } from "../postgres/client-programs";
import { splitStatements } from "../postgres/sql-text";
import { Queryable, quoteIdent, rows } from "../postgres/sql";
import type { MigrationFile } from "../runner/migration-files";
import { withShadow } from "./shadow";

export interface SquashSql {
  /** The statements that build the schema and its rows, in pg_dump's order. */
  up: string[];
  /** The statements that drop all of it again. */
  down: string[];
}

/**
 * pg_dump's session settings are the runner's to make (lock_timeout, statement_timeout) or would
 * outlive the migration on its connection (search_path, set with is_local false): left out. pg_dump
 * qualifies every name with its schema, so none is needed. A comment on an extension needs its
 * ownership, which a migration role may not have.
 */
function isSessionSetting(statement: string): boolean {
  return /^SET\s/i.test(statement)
    || /^SELECT\s+pg_catalog\.set_config\(/i.test(statement)
    || /^COMMENT\s+ON\s+EXTENSION\s/i.test(statement);
}

/** pg_dump of the shadow database, one section or the rows, as statements (bookkeeping tables left out). */
async function dumped(target: DbTarget, what: string[]): Promise<string[]> {
  const args = [...what, "--no-owner", "--no-privileges", "--no-password", "--exclude-table=public.migrations*"];
  const r = await runPgTool(findPgTool("pg_dump", 0), args, pgEnv(target));
  if (r.code !== 0) throw new MigrationError(`pg_dump of the shadow database failed: ${firstError(r.stderr)}`, target.db);
  // psql meta-commands (pg_dump's `\restrict` guard lines) are not SQL: a migration sends SQL only.
  const sql = r.stdout.split("\n").filter((line) => !line.startsWith("\\")).join("\n");
  return splitStatements(sql).map((s) => s.text).filter((s) => !isSessionSetting(s));
}

/** Types, functions, tables; then their rows; then constraints, indexes and triggers (after the rows: no trigger fires on them). */
async function dumpStatements(target: DbTarget): Promise<string[]> {
  return [
    ...(await dumped(target, ["--section=pre-data"])),
    ...(await dumped(target, ["--data-only", "--column-inserts"])),
    ...(await dumped(target, ["--section=post-data"])),
  ];
}

/**
 * What the squashed migrations built, to drop in the down: relations, functions, types and
 * sequences in public that no extension owns, and the extensions they created.
 */
async function dropStatements(q: Queryable, extensionsBefore: Set<string>): Promise<string[]> {
  const own = (classid: string, oid: string) => `NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = '${classid}'::regclass AND d.objid = ${oid} AND d.deptype = 'e')`;
  const relations = await rows<{ name: string; kind: string }>(q, `
    SELECT c.relname AS name, c.relkind AS kind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm', 'f') AND c.relname NOT LIKE 'migrations%' AND ${own("pg_class", "c.oid")}
       AND NOT (c.relkind = 'r' AND c.relispartition)
     ORDER BY c.relkind DESC, c.relname DESC`);
  const sequences = await rows<{ name: string }>(q, `
    SELECT c.relname AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = 'public' AND c.relkind = 'S' AND c.relname NOT LIKE 'migrations%' AND ${own("pg_class", "c.oid")} ORDER BY 1`);
  const functions = await rows<{ signature: string; kind: string }>(q, `
    SELECT p.oid::regprocedure::text AS signature, p.prokind AS kind FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
     WHERE n.nspname = 'public' AND ${own("pg_proc", "p.oid")} ORDER BY 1`);
  const types = await rows<{ name: string }>(q, `
    SELECT t.typname AS name FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
     WHERE n.nspname = 'public' AND t.typtype IN ('e', 'd', 'r') AND ${own("pg_type", "t.oid")} ORDER BY 1`);
  const extensions = await rows<{ name: string }>(q, `SELECT extname AS name FROM pg_extension WHERE extname <> 'plpgsql' ORDER BY 1 DESC`);
  const kinds: Record<string, string> = { v: "VIEW", m: "MATERIALIZED VIEW", f: "FOREIGN TABLE", r: "TABLE", p: "TABLE" };
  return [
    ...relations.map((r) => `DROP ${kinds[r.kind]} IF EXISTS public.${quoteIdent(r.name)} CASCADE`),
    ...sequences.map((s) => `DROP SEQUENCE IF EXISTS public.${quoteIdent(s.name)} CASCADE`),
    ...functions.map((f) => `DROP ${f.kind === "p" ? "PROCEDURE" : f.kind === "a" ? "AGGREGATE" : "FUNCTION"} IF EXISTS ${f.signature.startsWith("public.") ? f.signature : `public.${f.signature}`} CASCADE`),
    ...types.map((t) => `DROP TYPE IF EXISTS public.${quoteIdent(t.name)} CASCADE`),
    ...extensions.filter((e) => !extensionsBefore.has(e.name)).map((e) => `DROP EXTENSION IF EXISTS ${quoteIdent(e.name)}`),
  ];
}

/**
 * The SQL of one migration that builds what `files` build, applied in order to an empty shadow
 * database of `target`.
 *
 * @example const { up, down } = await squashSql(config.targets.apidb, applied, { connectTimeoutMs })
 */
export async function squashSql(target: DbTarget, files: MigrationFile[], options: { shadowUrl?: string; connectTimeoutMs: number }): Promise<SquashSql> {
  return withShadow(target, options, async (shadow) => {
    const before = new Set((await rows<{ extname: string }>(shadow.dataSource, `SELECT extname FROM pg_extension`)).map((e) => e.extname));
    await shadow.apply(files);
    const up = await dumpStatements(shadow.target);
    const down = await dropStatements(shadow.dataSource, before);
    return { up, down };
  });
}

/** The class name of a squash: `Squash` and the name of the last migration it replaces (its timestamp at the end, as TypeORM wants). */
export function squashName(last: MigrationFile): string {
  return `Squash${last.name}`;
}

/**
 * The migration file of a squash: its `replaces` lists the migrations it stands for (a database
 * that applied all of them has its history rewritten to it; one that applied some is refused).
 */
export function renderSquash(db: DbName, name: string, replaces: string[], sql: SquashSql): string {
  const list = (items: string[], indent: string) => items.map((s) => `${indent}${JSON.stringify(s)},`).join("\n");
  return `import { MigrationInterface, QueryRunner } from "typeorm";

/**
 * ${db}: ${replaces.length} migrations squashed into one (migration:squash), built from the schema and
 * rows they produce. A database that applied all of them has its history rewritten to this one.
 */
export class ${name} implements MigrationInterface {
    name = ${JSON.stringify(name)};

    replaces = [
${list(replaces, "        ")}
    ];

    public async up(queryRunner: QueryRunner): Promise<void> {
        for (const statement of UP) await queryRunner.query(statement);
    }

    public async down(queryRunner: QueryRunner): Promise<void> {
        for (const statement of DOWN) await queryRunner.query(statement);
    }
}

const UP: string[] = [
${list(sql.up, "    ")}
];

const DOWN: string[] = [
${list(sql.down, "    ")}
];
`;
}
