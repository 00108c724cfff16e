// A shadow database: a scratch database in which migrations are replayed to learn what schema they
// produce. Created beside the real one (when the role may create databases) and dropped after; or
// an empty database the user names with --shadow-url, emptied again after.
import * as crypto from "crypto";
import type { DataSource } from "typeorm";
import type { Catalog } from "./catalog";
import { readCatalog } from "./catalog";
import { parsePostgresUrl, redactUrl, type DbTarget } from "../config";
import { connectClient, connectServer, openDataSource } from "../postgres/connect";
import { quoteIdent } from "../postgres/sql";
import type { DbName } from "../databases";
import { MigrationError } from "../errors";
import { ensureBookkeeping } from "../runner/history";
import { extensionsCreatedBy, type MigrationFile } from "../runner/migration-files";
import { applyMigration, DEFAULT_TIMEOUTS } from "../runner/migrator";


/** Relations in public that no extension owns: what a scratch database must not have. */
const OWN_RELATIONS = `
  SELECT c.oid, c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
   WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
     AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')`;

/** Empties a scratch database of what a replay created, keeping what extensions it had own. */
async function emptyScratch(client: import("pg").Client, extensionsBefore: Set<string>): Promise<void> {
  const { rows } = await client.query(`SELECT relname, relkind FROM (${OWN_RELATIONS}) r WHERE relkind IN ('r', 'p', 'v', 'm', 'f')`);
  for (const r of rows) {
    const kind = r.relkind === "v" ? "VIEW" : r.relkind === "m" ? "MATERIALIZED VIEW" : r.relkind === "f" ? "FOREIGN TABLE" : "TABLE";
    await client.query(`DROP ${kind} IF EXISTS public.${quoteIdent(r.relname)} CASCADE`);
  }
  const seqs = await client.query(`SELECT relname FROM (${OWN_RELATIONS}) r WHERE relkind = 'S'`);
  for (const r of seqs.rows) await client.query(`DROP SEQUENCE IF EXISTS public.${quoteIdent(r.relname)} CASCADE`);
  const types = await client.query(`
    SELECT t.typname FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
     WHERE n.nspname = 'public' AND t.typtype IN ('e', 'd') 
       AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_type'::regclass AND d.objid = t.oid AND d.deptype = 'e')`);
  for (const t of types.rows) await client.query(`DROP TYPE IF EXISTS public.${quoteIdent(t.typname)} CASCADE`);
  const after = (await client.query(`SELECT extname FROM pg_extension`)).rows.map((r) => r.extname as string);
  for (const ext of after.filter((e) => !extensionsBefore.has(e))) await client.query(`DROP EXTENSION IF EXISTS ${quoteIdent(ext)} CASCADE`);
}

/**
 * A shadow database being built: migrations are applied to it in steps, and it can be read between
 * them, e.g. the catalog after the applied migrations, then TypeORM's entity diff after the pending
 * ones too, all in one scratch database.
 *
 *   await withShadow(target, { connectTimeoutMs }, async (shadow) => {
 *     await shadow.apply(applied);
 *     const expected = await shadow.catalog();
 *     await shadow.apply(pending);
 *     return schemaDiff(shadow.dataSource);
 *   });
 */
export interface Shadow {
  /** Applies `files` in order, after the ones applied before. */
  apply(files: MigrationFile[]): Promise<void>;
  /** The catalog the migrations applied so far produce. */
  catalog(): Promise<Catalog>;
  /** Connected to the shadow database, with the real database's entities (for `schemaDiff`). */
  readonly dataSource: DataSource;
  /** The shadow database itself (e.g. for pg_dump). */
  readonly target: DbTarget;
}

/**
 * Runs `body` on the (empty) shadow database `target` names. `extensionsBefore`: the extensions a
 * given scratch database had before; they count only where the applied migrations create them.
 */
async function usingShadow<T>(target: DbTarget, connectTimeoutMs: number, extensionsBefore: Set<string> | undefined, body: (shadow: Shadow) => Promise<T>): Promise<T> {
  const ds = await openDataSource(target, connectTimeoutMs);
  const applied: MigrationFile[] = [];
  try {
    await ensureBookkeeping(ds);
    return await body({
      dataSource: ds,
      target,
      async apply(files) {
        for (const file of files) {
          try {
            await applyMigration(ds, file, "up", { runId: "shadow", command: "shadow", timeouts: DEFAULT_TIMEOUTS });
          } catch (error) {
            throw new MigrationError(`replaying ${file.name} in the shadow database failed: ${(error as Error).message.split("\n")[0]}`, target.db);
          }
          applied.push(file);
        }
      },
      async catalog() {
        const catalog = await readCatalog(ds);
        if (extensionsBefore) {
          const created = new Set(extensionsCreatedBy(applied));
          catalog.extensions = catalog.extensions.filter((e) => !extensionsBefore.has(e) || created.has(e) || e === "plpgsql");
        }
        return catalog;
      },
    });
  } finally {
    await ds.destroy();
  }
}

/** The catalog that `files`, applied in order to an empty database, produce. */
export async function shadowCatalog(target: DbTarget, files: MigrationFile[], options: { shadowUrl?: string; connectTimeoutMs: number }): Promise<Catalog> {
  return withShadow(target, options, async (shadow) => {
    await shadow.apply(files);
    return shadow.catalog();
  });
}

/**
 * Runs `body` on an empty shadow database of `target`: one created beside it and dropped after, or
 * the scratch database `shadowUrl` names, emptied again after.
 */
export async function withShadow<T>(target: DbTarget, options: { shadowUrl?: string; connectTimeoutMs: number }, body: (shadow: Shadow) => Promise<T>): Promise<T> {
  if (options.shadowUrl) return inGivenDatabase(target.db, options.shadowUrl, options.connectTimeoutMs, body);
  const name = `${target.database}_shadow_${crypto.randomBytes(3).toString("hex")}`.slice(0, 63);
  const admin = await connectServer(target, options.connectTimeoutMs);
  try {
    try {
      await admin.query(`CREATE DATABASE ${quoteIdent(name)}`);
    } catch (error) {
      if ((error as { code?: string }).code === "42501") {
        throw new MigrationError("this role may not create a shadow database: pass --shadow-url with an empty scratch database", target.db);
      }
      throw error;
    }
    try {
      const url = new URL(target.url);
      url.pathname = "/" + encodeURIComponent(name);
      return await usingShadow({ ...target, url: url.toString(), database: name, display: redactUrl(url.toString()) }, options.connectTimeoutMs, undefined, body);
    } finally {
      await admin.query(`DROP DATABASE IF EXISTS ${quoteIdent(name)} WITH (FORCE)`).catch(() => undefined);
    }
  } finally {
    await admin.end().catch(() => undefined);
  }
}

async function inGivenDatabase<T>(db: DbName, shadowUrl: string, connectTimeoutMs: number, body: (shadow: Shadow) => Promise<T>): Promise<T> {
  const parsed = parsePostgresUrl(shadowUrl, "--shadow-url", db);
  const database = decodeURIComponent(parsed.pathname.slice(1));
  const target: DbTarget = { db, url: parsed.toString(), database, source: "--shadow-url", display: redactUrl(parsed.toString()) };
  const client = await connectClient(target, connectTimeoutMs);
  try {
    const { rowCount } = await client.query(OWN_RELATIONS);
    if (rowCount) throw new MigrationError(`shadow database ${database} is not empty: give an empty scratch database`, db);
    const before = new Set((await client.query(`SELECT extname FROM pg_extension`)).rows.map((r) => r.extname as string));
    try {
      return await usingShadow(target, connectTimeoutMs, before, body);
    } finally {
      // Leave it as we found it: no tables, only the extensions it had (a DBA may have installed
      // the untrusted ones, like vector, for a role that may not).
      await emptyScratch(client, before).catch(() => undefined);
    }
  } finally {
    await client.end().catch(() => undefined);
  }
}
