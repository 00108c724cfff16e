// Watching one migration run on a scratch copy: which lock each statement took and on which table,
// which tables were rewritten, how many rows the tables it touched had before and after. The
// migration is handed to `applyMigration` unchanged in what it does: its `up`/`down` get a query
// runner that runs each statement, then (inside the migration's transaction) reads the locks its own
// backend holds in pg_locks; a lock not held before belongs to that statement. Outside a
// transaction a statement's locks are gone when it ends, so there the lock comes from its kind
// (locks.ts). What the probe itself runs is not counted in the migration's time.
import type { DataSource, MigrationInterface, QueryRunner } from "typeorm";
import type { MigrationFile } from "../runner/migration-files";
import { Queryable, rows } from "../postgres/sql";
import { inferredLock, lockStrength, oneLine, statementTarget } from "./locks";

export interface StatementLock {
  mode: string;
  table: string;
  /** Other tables it newly locked in the same mode (a foreign key locks both of its tables). */
  alsoOn?: string[];
  /** Read from the statement's kind (it ran outside a transaction), not sampled from pg_locks. */
  inferred?: true;
}

export interface StatementReport {
  /** The statement on one line, shortened. */
  sql: string;
  durationMs: number;
  /** The strongest lock it took on a table that existed before the migration. */
  lock?: StatementLock;
  /** The server's error, when this statement failed. */
  error?: string;
}

export interface Observation {
  statements: StatementReport[];
  /** Time spent by the probe inside the migration (counts, lock samples), to subtract from its duration. */
  overheadMs: number;
  /** Tables that existed before the migration and got a new relfilenode: rewritten. */
  rewritten: string[];
  /** Rows of each table the migration wrote to or altered, before and after (null: not counted, or gone). */
  rows: Record<string, { before: number | null; after: number | null }>;
}

interface Relation {
  oid: number;
  /** `profiles` in public, `schema.table` elsewhere; an index is named by its table. */
  table: string;
  /** As `tableKey` spells it: `public.profiles`. */
  key: string;
  /** The table's oid (its own for a table, its table's for an index). */
  tableOid: number;
  kind: string;
  relfilenode: number;
  /** The relation's own key (an index's name, a table's name). */
  ownKey: string;
}

const RELATIONS = `
  SELECT c.oid::int8 AS oid, c.relname, n.nspname, c.relkind, c.relfilenode::int8 AS relfilenode,
         t.oid::int8 AS table_oid, t.relname AS table_name, tn.nspname AS table_schema
    FROM pg_class c
    JOIN pg_namespace n ON n.oid = c.relnamespace
    LEFT JOIN pg_index i ON i.indexrelid = c.oid
    LEFT JOIN pg_class t ON t.oid = i.indrelid
    LEFT JOIN pg_namespace tn ON tn.oid = t.relnamespace
   WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'
     AND c.relkind IN ('r', 'p', 'm', 'f', 'i', 'I')`;

const shown = (schema: string, name: string) => (schema === "public" ? name : `${schema}.${name}`);

/** The relations of the database before a migration, by oid. */
async function relationsOf(ds: DataSource): Promise<Map<number, Relation>> {
  const found = await rows<{ oid: string; relname: string; nspname: string; relkind: string; relfilenode: string; table_oid: string | null; table_name: string | null; table_schema: string | null }>(ds, RELATIONS);
  const out = new Map<number, Relation>();
  for (const r of found) {
    const isIndex = r.table_oid !== null;
    const schema = isIndex ? r.table_schema! : r.nspname;
    const name = isIndex ? r.table_name! : r.relname;
    out.set(Number(r.oid), {
      oid: Number(r.oid), table: shown(schema, name), key: `${schema}.${name}`, tableOid: isIndex ? Number(r.table_oid) : Number(r.oid),
      kind: r.relkind, relfilenode: Number(r.relfilenode), ownKey: `${r.nspname}.${r.relname}`,
    });
  }
  return out;
}

/** The locks this backend holds on relations, granted: `oid:mode` keys. */
const OWN_LOCKS = `SELECT l.relation::int8 AS oid, l.mode FROM pg_locks l WHERE l.pid = pg_backend_pid() AND l.locktype = 'relation' AND l.granted AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())`;

const elapsedMs = (started: bigint) => Number(process.hrtime.bigint() - started) / 1e6;
/** Milliseconds to a tenth. */
const tenth = (ms: number) => Math.round(ms * 10) / 10;

/** SELECT, SHOW, SET and the like that took no table lock: TypeORM's own catalog reads, not worth a line. */
const QUIET = /^(?:SELECT|SHOW|SET|RESET)\b/i;

/**
 * A migration run on a scratch database, observed. `file()` is what to give `applyMigration`; after
 * it returns (or throws), `finish()` compares the tables with how they were and returns what was seen.
 *
 *   const probe = await watchMigration(scratch, file);
 *   const step = await applyMigration(scratch, probe.file(), "up", context);
 *   const seen = await probe.finish();
 */
export async function watchMigration(ds: DataSource, file: MigrationFile): Promise<{ file(): MigrationFile; finish(): Promise<Observation> }> {
  const before = await relationsOf(ds);
  const byKey = new Map<string, Relation>();
  for (const r of before.values()) if (r.oid === r.tableOid) byKey.set(r.key, r);
  const indexByKey = new Map<string, Relation>();
  for (const r of before.values()) if (r.oid !== r.tableOid) indexByKey.set(r.ownKey, r);

  // One try of the migration (a taken lock rolls it back and tries again: it starts over).
  let attempt: { statements: StatementReport[]; overheadMs: number; seen: Set<string>; counted: Map<number, number>; touched: Set<number> };
  const reset = () => (attempt = { statements: [], overheadMs: 0, seen: new Set(), counted: new Map(), touched: new Set() });
  reset();

  /** The pre-existing table a statement acts on, found by its text. */
  const tableOf = (sql: string): Relation | undefined => {
    const target = statementTarget(sql);
    if (target.index) {
      const index = indexByKey.get(target.index);
      return index ? before.get(index.tableOid) : undefined;
    }
    return target.table ? byKey.get(target.table) : undefined;
  };

  /**
   * Rows of a table, found by oid (the migration may have renamed it). Inside the migration's
   * transaction under a savepoint: a count that fails must not fail the migration.
   */
  const count = async (q: Queryable, table: Relation, inTransaction: boolean): Promise<number | null> => {
    if (inTransaction) await q.query("SAVEPOINT rehearsal_probe");
    try {
      const [found] = await rows<{ name: string }>(q, `SELECT format('%I.%I', n.nspname, c.relname) AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = $1`, [table.oid]);
      if (!found) return null;
      const [{ n }] = await rows<{ n: string }>(q, `SELECT count(*)::int8 AS n FROM ${found.name}`);
      if (inTransaction) await q.query("RELEASE SAVEPOINT rehearsal_probe");
      return Number(n);
    } catch {
      if (inTransaction) await q.query("ROLLBACK TO SAVEPOINT rehearsal_probe").catch(() => undefined);
      return null;
    }
  };

  /**
   * Locks held now that were not held after the previous statement: the strongest, on a table that
   * existed before the migration (the statement's own table first when several have it).
   */
  const newLock = async (runner: QueryRunner, own: Relation | undefined): Promise<StatementLock | undefined> => {
    const held = await rows<{ oid: string; mode: string }>(runner, OWN_LOCKS);
    const fresh: Array<{ mode: string; table: Relation }> = [];
    for (const h of held) {
      const rel = before.get(Number(h.oid));
      if (!rel) continue; // a relation this migration created: nobody else can be waiting for it
      const key = `${rel.tableOid}:${h.mode}`;
      if (attempt.seen.has(key)) continue;
      attempt.seen.add(key);
      if (lockStrength(h.mode) > 1) attempt.touched.add(rel.tableOid);
      fresh.push({ mode: h.mode, table: before.get(rel.tableOid) ?? rel });
    }
    if (!fresh.length) return undefined;
    const strongest = Math.max(...fresh.map((f) => lockStrength(f.mode)));
    const tables = [...new Set(fresh.filter((f) => lockStrength(f.mode) === strongest).map((f) => f.table.table))];
    const first = own && tables.includes(own.table) ? own.table : tables[0];
    const others = tables.filter((t) => t !== first);
    return { mode: fresh.find((f) => lockStrength(f.mode) === strongest)!.mode, table: first, ...(others.length ? { alsoOn: others } : {}) };
  };

  const observe = (runner: QueryRunner): QueryRunner => {
    const wrapped = Object.create(runner) as QueryRunner;
    wrapped.query = (async (sql: string, ...rest: unknown[]) => {
      const text = String(sql).trim();
      const inTransaction = runner.isTransactionActive;
      const table = tableOf(text);
      // Rows before: counted when the migration first acts on a table (its lock then does not count).
      if (table && !attempt.counted.has(table.oid)) {
        const started = process.hrtime.bigint();
        attempt.counted.set(table.oid, (await count(runner, table, inTransaction)) ?? NaN);
        if (inTransaction) attempt.seen.add(`${table.oid}:AccessShareLock`);
        attempt.overheadMs += elapsedMs(started);
      }
      const started = process.hrtime.bigint();
      let result: unknown;
      try {
        result = await (runner.query as (...a: unknown[]) => Promise<unknown>).call(runner, sql, ...rest);
      } catch (error) {
        attempt.statements.push({ sql: oneLine(text), durationMs: tenth(elapsedMs(started)), error: String((error as Error)?.message ?? error).split("\n")[0] });
        throw error;
      }
      const durationMs = elapsedMs(started);
      let lock: StatementLock | undefined;
      if (inTransaction) {
        const sampled = process.hrtime.bigint();
        lock = await newLock(runner, table);
        attempt.overheadMs += elapsedMs(sampled);
      } else {
        const mode = inferredLock(text);
        if (mode && table) {
          lock = { mode, table: table.table, inferred: true };
          if (lockStrength(mode) > 1) attempt.touched.add(table.oid);
        }
      }
      if (!(QUIET.test(text) && !lock)) attempt.statements.push({ sql: oneLine(text), durationMs: tenth(durationMs), ...(lock ? { lock } : {}) });
      return result;
    }) as QueryRunner["query"];
    return wrapped;
  };

  const real = file.migration;
  // Inherits everything the runner reads from the migration (transaction, timeouts, name).
  const migration = Object.create(real) as MigrationInterface;
  migration.up = (qr: QueryRunner) => (reset(), real.up(observe(qr)));
  migration.down = (qr: QueryRunner) => (reset(), real.down(observe(qr)));
  const observed: MigrationFile = {
    name: file.name, timestamp: file.timestamp, file: file.file, path: file.path, checksum: file.checksum,
    migration, migrationClass: file.migrationClass,
  };

  return {
    file: () => observed,
    async finish() {
      const after = new Map((await rows<{ oid: string; relfilenode: string }>(ds, `SELECT oid::int8 AS oid, relfilenode::int8 AS relfilenode FROM pg_class WHERE oid = ANY($1::oid[])`, [[...before.keys()]]))
        .map((r) => [Number(r.oid), Number(r.relfilenode)]));
      const rewritten = [...before.values()]
        .filter((r) => r.oid === r.tableOid && r.relfilenode !== 0 && after.has(r.oid) && after.get(r.oid) !== r.relfilenode)
        .map((r) => r.table);
      const touched = new Set([...attempt.touched, ...[...before.values()].filter((r) => rewritten.includes(r.table) && r.oid === r.tableOid).map((r) => r.oid)]);
      const counts: Observation["rows"] = {};
      for (const oid of touched) {
        const table = before.get(oid)!;
        const counted = attempt.counted.get(oid);
        const gone = !after.has(oid);
        counts[table.table] = {
          before: counted === undefined || Number.isNaN(counted) ? null : counted,
          after: gone ? null : await count(ds, table, false),
        };
      }
      return { statements: attempt.statements, overheadMs: attempt.overheadMs, rewritten: [...new Set(rewritten)].sort(), rows: counts };
    },
  };
}
