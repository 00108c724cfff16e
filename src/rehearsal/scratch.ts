// The scratch database a rehearsal copies a database into: created beside the real one as
// `<database>_rehearsal_<run id>` and dropped after, or an empty database the user names with
// --scratch-url (for a role that may not create databases), marked as ours while we use it and
// emptied after. Every connection of a run carries its run id in application_name; a scratch
// database whose run has no connection left on the server was left by a killed run, and the next
// run removes it (a dropped network may keep a dead run's connection open for a while: it is then
// removed by a later run).
import * as fs from "fs";
import type { Client } from "pg";
import { parsePostgresUrl, redactUrl, type DbTarget } from "../config";
import type { DbName } from "../databases";
import { MigrationError } from "../errors";
import { connectClient, connectServer, describeError } from "../postgres/connect";
import { applicationName } from "../postgres/data-source";
import { checkNotPooled, checkPrimary } from "../postgres/server-checks";
import { quoteIdent } from "../postgres/sql";
import { leftoverCopyDirs } from "./copy";

export interface Scratch {
  /** The scratch database (its URL carries the password, if any: never print it). */
  target: DbTarget;
  /** Created by us (dropped after), or given by --scratch-url (emptied after). */
  given: boolean;
  /** Cancels a backend's statement on the scratch's server (Ctrl-C: the migration's own connection is busy). */
  cancelBackend(pid: number): Promise<unknown>;
  /** Drops or empties the scratch database and closes our connection; a warning when it could not. */
  dispose(): Promise<string | undefined>;
}

/** `run 20261124T120301Z-3fa9` -> `20261124t120301z_3fa9`: a run id as database names take it. */
const idPart = (runId: string) => runId.toLowerCase().replace(/-/g, "_");
const ID_PART = String.raw`(\d{8}t\d{6}z_[0-9a-f]{4})`;
const runIdOf = (part: string) => part.replace(/t/, "T").replace(/z_/, "Z-");

/** Room for the suffix `_rehearsal_<run id>` (32 characters) within PostgreSQL's 63. */
const prefixOf = (database: string) => database.slice(0, 31);

/** `apidb` -> `apidb_rehearsal_20261124t120301z_3fa9`. */
export function scratchName(database: string, runId: string): string {
  return `${prefixOf(database)}_rehearsal_${idPart(runId)}`;
}

/** The run id in a scratch database name of `database`; undefined for any other name. */
export function scratchRunId(database: string, name: string): string | undefined {
  const escaped = prefixOf(database).replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  const m = new RegExp(`^${escaped}_rehearsal_${ID_PART}$`).exec(name);
  return m ? runIdOf(m[1]) : undefined;
}

/** Whether run `runId` still has a connection on the server (its own, or its pg_dump's or pg_restore's). */
export async function runIsAlive(client: Client, runId: string): Promise<boolean> {
  const name = applicationName(runId);
  const { rows } = await client.query<{ alive: boolean }>(
    `SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND (application_name = $1 OR application_name LIKE $2)) AS alive`,
    [name, `${name} %`],
  );
  return rows[0].alive;
}

function serverOf(target: DbTarget): string {
  const u = new URL(target.url);
  return `${u.hostname}:${u.port || 5432}`;
}

/** `target`'s URL with another database. */
function onDatabase(target: DbTarget, database: string): DbTarget {
  const url = new URL(target.url);
  url.pathname = "/" + encodeURIComponent(database);
  return { ...target, url: url.toString(), database, display: redactUrl(url.toString()) };
}

const literal = (s: string) => `'${s.replace(/'/g, "''")}'`;

/**
 * Removes what killed rehearsals left: scratch databases of `targets` (by name) whose run has no
 * connection on their server, and this user's temp directories whose process is gone (a live
 * rehearsal of another server keeps its own). Returns what it
 * removed, and warnings for what it could not.
 */
export async function removeLeftovers(targets: DbTarget[], connectTimeoutMs: number, runId: string): Promise<{ removed: string[]; warnings: string[] }> {
  const removed: string[] = [];
  const warnings: string[] = [];
  const byServer = new Map<string, DbTarget[]>();
  for (const t of targets) byServer.set(serverOf(t), [...(byServer.get(serverOf(t)) ?? []), t]);
  const dirs = leftoverCopyDirs().filter((d) => d.runId !== runId);
  const aliveSomewhere = new Set<string>();
  for (const group of byServer.values()) {
    let admin: Client;
    try {
      admin = await connectServer(group[0], connectTimeoutMs, runId);
    } catch (error) {
      warnings.push(`${group[0].db}: leftovers of earlier rehearsals not checked: ${(error as Error).message}`);
      dirs.forEach((d) => aliveSomewhere.add(d.runId)); // cannot tell: keep them
      continue;
    }
    try {
      for (const target of group) {
        const { rows } = await admin.query<{ datname: string }>(`SELECT datname FROM pg_database WHERE starts_with(datname, $1) ORDER BY 1`, [`${prefixOf(target.database)}_rehearsal_`]);
        for (const { datname } of rows) {
          const owner = scratchRunId(target.database, datname);
          if (!owner || owner === runId || (await runIsAlive(admin, owner))) continue;
          try {
            await admin.query(`DROP DATABASE IF EXISTS ${quoteIdent(datname)} WITH (FORCE)`);
            removed.push(datname);
          } catch (error) {
            warnings.push(`${target.db}: could not drop ${datname}, left by rehearsal run ${owner}: ${describeError(error, target).message}`);
          }
        }
      }
    } finally {
      await admin.end().catch(() => undefined);
    }
  }
  for (const d of dirs.filter((x) => !aliveSomewhere.has(x.runId))) {
    fs.rmSync(d.dir, { recursive: true, force: true });
    removed.push(d.dir);
  }
  return { removed, warnings };
}

/**
 * A new scratch database beside `real` on its server, with the same encoding and collation (a
 * unique index over text must meet the same collation as in production). `realExists`: false when
 * the real database does not exist yet (then the server's defaults).
 */
export async function createScratch(real: DbTarget, realExists: boolean, runId: string, connectTimeoutMs: number): Promise<Scratch> {
  // No application_name until we know the server is reached directly (see connectClient).
  const admin = await connectServer(real, connectTimeoutMs, null);
  const name = scratchName(real.database, runId);
  try {
    await checkNotPooled(admin, real);
    await checkPrimary(admin, real);
    await admin.query(`SELECT set_config('application_name', $1, false)`, [applicationName(runId)]);
    let options = "";
    if (realExists) {
      const { rows } = await admin.query<{ d: Record<string, unknown>; encoding: string }>(`SELECT to_jsonb(d) AS d, pg_encoding_to_char(d.encoding) AS encoding FROM pg_database d WHERE datname = $1`, [real.database]);
      const d = rows[0]?.d;
      if (d) {
        options = ` ENCODING ${literal(rows[0].encoding)} LC_COLLATE ${literal(String(d.datcollate))} LC_CTYPE ${literal(String(d.datctype))}`;
        const icu = (d.daticulocale ?? d.datlocale) as string | undefined;
        if (d.datlocprovider === "i" && icu) options += ` LOCALE_PROVIDER icu ICU_LOCALE ${literal(icu)}`;
      }
    }
    try {
      await admin.query(`CREATE DATABASE ${quoteIdent(name)} TEMPLATE template0${options}`);
    } catch (error) {
      if ((error as { code?: string }).code === "42501") {
        throw new MigrationError("this role may not create a scratch database: pass --scratch-url with an empty scratch database (or set MIGRATION_SCRATCH_URL)", real.db);
      }
      throw error;
    }
  } catch (error) {
    await admin.end().catch(() => undefined);
    throw describeError(error, real);
  }
  return {
    target: onDatabase(real, name),
    given: false,
    cancelBackend: (pid) => admin.query(`SELECT pg_cancel_backend($1)`, [pid]),
    async dispose() {
      try {
        await admin.query(`DROP DATABASE IF EXISTS ${quoteIdent(name)} WITH (FORCE)`);
        return undefined;
      } catch (error) {
        return `could not drop the scratch database ${name}: ${describeError(error, real).message} (the next rehearsal removes it)`;
      } finally {
        await admin.end().catch(() => undefined);
      }
    },
  };
}

/** Our mark in a given scratch database while we use it: which run, and what it had before. */
const MARKER = "migrations_rehearsal";

/** Relations, types and routines of the scratch database's own (none an extension owns), outside the system schemas. */
const OWN_OBJECTS = `
  SELECT 'rel' AS what, format('%I.%I', n.nspname, c.relname) AS name, c.relkind::text AS kind
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
   WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S') AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'
     AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype IN ('e', 'i', 'a'))
  UNION ALL
  SELECT 'type', format('%I.%I', n.nspname, t.typname), t.typtype::text
    FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
   WHERE t.typtype IN ('e', 'd', 'r') AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'
     AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_type'::regclass AND d.objid = t.oid AND d.deptype = 'e')
  UNION ALL
  SELECT 'routine', p.oid::regprocedure::text, p.prokind::text
    FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
   WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'
     AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e')`;

const SCHEMAS = `SELECT nspname FROM pg_namespace WHERE nspname NOT IN ('pg_catalog', 'information_schema') AND nspname NOT LIKE 'pg\\_%'`;

/** Empties a given scratch database back to `before` (its schemas and extensions when we took it). */
async function emptyGiven(client: Client, before: { schemas: string[]; extensions: string[] }): Promise<void> {
  const schemas = (await client.query<{ nspname: string }>(SCHEMAS)).rows.map((r) => r.nspname);
  for (const s of schemas.filter((x) => !before.schemas.includes(x))) await client.query(`DROP SCHEMA IF EXISTS ${quoteIdent(s)} CASCADE`);
  const { rows } = await client.query<{ what: string; name: string; kind: string }>(OWN_OBJECTS);
  const kinds: Record<string, string> = { r: "TABLE", p: "TABLE", v: "VIEW", m: "MATERIALIZED VIEW", f: "FOREIGN TABLE", S: "SEQUENCE" };
  for (const r of rows.filter((x) => x.what === "rel" && x.name !== `public.${MARKER}`)) await client.query(`DROP ${kinds[r.kind]} IF EXISTS ${r.name} CASCADE`);
  for (const r of rows.filter((x) => x.what === "type")) await client.query(`DROP TYPE IF EXISTS ${r.name} CASCADE`);
  for (const r of rows.filter((x) => x.what === "routine")) {
    const kind = r.kind === "p" ? "PROCEDURE" : r.kind === "a" ? "AGGREGATE" : "FUNCTION";
    await client.query(`DROP ${kind} IF EXISTS ${r.name} CASCADE`);
  }
  const extensions = (await client.query<{ extname: string }>(`SELECT extname FROM pg_extension`)).rows.map((r) => r.extname);
  for (const e of extensions.filter((x) => !before.extensions.includes(x))) await client.query(`DROP EXTENSION IF EXISTS ${quoteIdent(e)} CASCADE`);
}

/**
 * The empty scratch database `scratchUrl` names (the password, if the URL has none, from
 * PGPASSWORD). One a killed rehearsal left marked is emptied first; any other content is refused.
 */
export async function takeGivenScratch(db: DbName, scratchUrl: string, runId: string, connectTimeoutMs: number): Promise<Scratch> {
  const parsed = parsePostgresUrl(scratchUrl, "--scratch-url", db);
  const database = decodeURIComponent(parsed.pathname.slice(1));
  if (!database) throw new MigrationError("--scratch-url names no database (postgres://user@host:5432/<scratch>)", db);
  const target: DbTarget = { db, url: parsed.toString(), database, source: "--scratch-url", display: redactUrl(parsed.toString()) };
  const client = await connectClient(target, connectTimeoutMs, undefined, null);
  try {
    await checkNotPooled(client, target);
    await client.query(`SELECT set_config('application_name', $1, false)`, [applicationName(runId)]);
    const marker = await client.query<{ run_id: string; schemas: string[]; extensions: string[] }>(`SELECT run_id, schemas, extensions FROM public.${MARKER}`).catch(() => undefined);
    if (marker?.rows[0]) {
      const owner = marker.rows[0].run_id;
      if (await runIsAlive(client, owner)) throw new MigrationError(`scratch database ${database} is in use by rehearsal run ${owner}`, db);
      await emptyGiven(client, marker.rows[0]);
      await client.query(`DROP TABLE public.${MARKER}`);
    }
    const { rows } = await client.query<{ what: string }>(OWN_OBJECTS);
    if (rows.length) throw new MigrationError(`scratch database ${database} is not empty: give an empty scratch database`, db);
    const before = {
      schemas: (await client.query<{ nspname: string }>(SCHEMAS)).rows.map((r) => r.nspname),
      extensions: (await client.query<{ extname: string }>(`SELECT extname FROM pg_extension`)).rows.map((r) => r.extname),
    };
    // Written first: a killed run's leftovers are known as ours, with what to keep.
    await client.query(`CREATE TABLE public.${MARKER} (run_id text NOT NULL, schemas text[] NOT NULL, extensions text[] NOT NULL)`);
    await client.query(`INSERT INTO public.${MARKER} VALUES ($1, $2, $3)`, [runId, before.schemas, before.extensions]);
    return {
      target,
      given: true,
      cancelBackend: (pid) => client.query(`SELECT pg_cancel_backend($1)`, [pid]),
      async dispose() {
        try {
          // Leave it as we found it: only the extensions it had (a DBA may have installed the untrusted ones, like vector).
          await client.query(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() AND application_name LIKE $1`, [`${applicationName(runId)}%`]);
          await emptyGiven(client, before);
          await client.query(`DROP TABLE IF EXISTS public.${MARKER}`);
          return undefined;
        } catch (error) {
          return `could not empty the scratch database ${database}: ${describeError(error, target).message} (the next rehearsal empties it)`;
        } finally {
          await client.end().catch(() => undefined);
        }
      },
    };
  } catch (error) {
    await client.end().catch(() => undefined);
    throw describeError(error, target);
  }
}
