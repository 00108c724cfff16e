// Expand/contract, one operation per kind of change, each with its two phases and their rollbacks
// (pgroll's Start / Complete / Rollback):
//   expand        new column (no rewrite), sync trigger, batched backfill, NOT NULL as a validated
//                 CHECK, the old column's indexes built CONCURRENTLY on the new one;
//   undoExpand    trigger and new column dropped (the old column has every value: the trigger saw to it);
//   contract      old and new compared on every row (refused, with the count and a key, if any differ),
//                 then in one short transaction: trigger dropped, old column dropped (a type change:
//                 the new column takes the old name; no rewrite);
//   undoContract  the old column back, trigger back, filled from the new one by a batched backfill.
// A dropped column has only a contract. Each DDL step is one short transaction with the run's
// lock_timeout, retried; each is safe to run again after a crash (IF [NOT] EXISTS, CREATE OR REPLACE).
import type { QueryRunner } from "typeorm";
import { quoteIdent as q, rows } from "../postgres/sql";
import { backfill } from "./backfill";
import type { EvolveChange } from "./change";
import { counterpartIndex, fitName, newColumn, oldColumn, watchId } from "./names";
import { inShortTransaction, requireOwnTransactions } from "./short-transaction";
import { BACKFILLING, bookkeepingSql, conversionSql, dropTriggerSql, EVOLVE_TABLE, newType, oldType, toNewSql, toOldSql, triggerSql, watchSql } from "./sync-trigger";

type Runner = QueryRunner;

/** A real server always answers this; a recording runner (--dry-run, lint) answers nothing. */
async function isRecording(qr: Runner): Promise<boolean> {
  return !(await rows(qr, `SELECT 1 AS one`)).length;
}

async function columnExists(qr: Runner, table: string, column: string): Promise<boolean> {
  const [r] = await rows<{ present: boolean }>(qr, `SELECT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass($1) AND attname = $2 AND attnum > 0 AND NOT attisdropped) AS present`, [`public.${q(table)}`, column]);
  return r?.present === true;
}

const sqlLiteral = (s: string) => `'${s.replace(/'/g, "''")}'`;

const notNullCheck = (table: string, column: string) => fitName(`${table}_${column}_not_null`);

async function constraintExists(qr: Runner, table: string, name: string): Promise<boolean> {
  const [r] = await rows<{ present: boolean }>(qr, `SELECT EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = to_regclass($1) AND conname = $2) AS present`, [`public.${q(table)}`, name]);
  return r?.present === true;
}

/** Statements sent in one round trip: inside a short transaction, the table lock is held no longer than the server needs. */
async function run(qr: Runner, statements: string[]): Promise<void> {
  if (statements.length) await qr.query(statements.join(";\n"));
}

interface IndexInfo {
  name: string;
  unique: boolean;
  method: string;
  columns: string[];
  simple: boolean;
}

/** Indexes (not the primary key) that include `column`. */
async function indexesOn(qr: Runner, table: string, column: string): Promise<IndexInfo[]> {
  return rows<IndexInfo>(qr, `
    SELECT c.relname AS name, i.indisunique AS unique, am.amname AS method,
           array(SELECT coalesce(a.attname, '?') FROM unnest(i.indkey::int2[]) WITH ORDINALITY k(attnum, n)
                 LEFT JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum ORDER BY k.n)::text[] AS columns,
           (i.indexprs IS NULL AND i.indpred IS NULL) AS simple
      FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am am ON am.oid = c.relam
      JOIN pg_attribute col ON col.attrelid = i.indrelid AND col.attname = $2
     WHERE i.indrelid = to_regclass($1) AND NOT i.indisprimary AND col.attnum = ANY (i.indkey::int2[])
     ORDER BY c.relname`, [`public.${q(table)}`, column]);
}

/** Builds, CONCURRENTLY, a counterpart on `to` of each index on `from` (names mapped with `name`). */
async function copyIndexes(qr: Runner, table: string, from: string, to: string, name: (index: string) => string): Promise<void> {
  for (const index of await indexesOn(qr, table, from)) {
    if (!index.simple) {
      throw new Error(`index ${index.name} on ${table}.${from} has expressions or a predicate: add its counterpart on ${to} to this migration by hand`);
    }
    const columns = index.columns.map((c) => q(c === from ? to : c)).join(", ");
    await qr.query(`CREATE ${index.unique ? "UNIQUE " : ""}INDEX CONCURRENTLY IF NOT EXISTS ${q(name(index.name))} ON public.${q(table)} USING ${index.method} (${columns})`);
  }
}

/** NOT NULL without a long lock: CHECK NOT VALID (added in the caller's transaction), VALIDATE, then SET NOT NULL (uses the check). */
async function validateNotNull(qr: Runner, table: string, column: string): Promise<void> {
  const check = notNullCheck(table, column);
  await qr.query(`ALTER TABLE public.${q(table)} VALIDATE CONSTRAINT ${q(check)}`);
  await inShortTransaction(qr, (t) => run(t, [
    `ALTER TABLE public.${q(table)} ALTER COLUMN ${q(column)} SET NOT NULL`,
    `ALTER TABLE public.${q(table)} DROP CONSTRAINT IF EXISTS ${q(check)}`,
  ]));
}

function addNotNullCheckSql(table: string, column: string): string {
  return `ALTER TABLE public.${q(table)} ADD CONSTRAINT ${q(notNullCheck(table, column))} CHECK (${q(column)} IS NOT NULL) NOT VALID`;
}

const cursorName = (change: EvolveChange, phase: string) => `evolve:${watchId(change)}:${phase}`;

/** Phase 1. Safe to run again after a crash: the backfill resumes from its cursor. */
export async function expand(qr: Runner, changes: EvolveChange[]): Promise<void> {
  requireOwnTransactions(qr, "expand");
  for (const change of changes) {
    if (change.kind === "drop-column") continue; // nothing to add: the column stays until the contract
    const table = change.table;
    const oldC = oldColumn(change);
    const newC = newColumn(change)!;
    await inShortTransaction(qr, (t) => run(t, [...bookkeepingSql(), ...conversionSql(change), triggerSql(change)[0], watchSql(change)]));
    const hasCheck = change.notNull && (await constraintExists(qr, table, notNullCheck(table, newC)));
    // The table's lock (ACCESS EXCLUSIVE, brief) only for what needs it, in one round trip.
    await inShortTransaction(qr, (t) => run(t, [
      `ALTER TABLE public.${q(table)} ADD COLUMN IF NOT EXISTS ${q(newC)} ${newType(change)}`,
      ...(change.notNull && !hasCheck ? [addNotNullCheckSql(table, newC)] : []),
      triggerSql(change)[1],
    ]));
    await backfill(qr, {
      table, name: cursorName(change, "expand"), setLocal: { [BACKFILLING]: "on" },
      set: `${q(newC)} = ${toNewSql(change, q(oldC))}`, where: `${q(newC)} IS NULL AND ${q(oldC)} IS NOT NULL`,
    });
    if (change.notNull) await qr.query(`ALTER TABLE public.${q(table)} VALIDATE CONSTRAINT ${q(notNullCheck(table, newC))}`);
    await copyIndexes(qr, table, oldC, newC, (index) => counterpartIndex(index, oldC, newC));
  }
}

/** Rolls phase 1 back: trigger and new column dropped; the old column holds every value. */
export async function undoExpand(qr: Runner, changes: EvolveChange[]): Promise<void> {
  requireOwnTransactions(qr, "undoing an expand");
  for (const change of [...changes].reverse()) {
    if (change.kind === "drop-column") continue;
    await inShortTransaction(qr, (t) => run(t, [...dropTriggerSql(change), `ALTER TABLE public.${q(change.table)} DROP COLUMN IF EXISTS ${q(newColumn(change)!)}`]));
    await inShortTransaction(qr, async (t) => {
      await t.query(`DELETE FROM "${EVOLVE_TABLE}" WHERE id = $1`, [watchId(change)]);
      if ((await rows<{ present: boolean }>(t, `SELECT to_regclass('public.migrations_backfill') IS NOT NULL AS present`))[0]?.present) {
        await t.query(`DELETE FROM "migrations_backfill" WHERE name LIKE $1`, [`evolve:${watchId(change)}:%`]);
      }
    });
  }
}

/** Rows where the old value cannot be had back from the new one, and the first such key. */
export async function countDifferences(qr: Runner, change: EvolveChange): Promise<{ rows: number; sampleKey?: string }> {
  const oldC = q(oldColumn(change));
  const newC = q(newColumn(change)!);
  const [key] = await rows<{ key: string }>(qr, `
    SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY array_position(i.indkey::int2[], a.attnum)) AS key
      FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
     WHERE i.indrelid = to_regclass($1) AND i.indisprimary`, [`public.${q(change.table)}`]);
  const keyExpr = key?.key ? `(${key.key})::text` : "ctid::text";
  const [r] = await rows<{ n: string; sample: string | null }>(qr,
    `SELECT count(*) AS n, min(${keyExpr}) AS sample FROM public.${q(change.table)} WHERE ${oldC} IS DISTINCT FROM ${toOldSql(change, newC)}`);
  return { rows: Number(r?.n ?? 0), ...(r?.sample ? { sampleKey: r.sample } : {}) };
}

/** Phase 2: verify, then drop the trigger and the old column (a type change: swap names). */
export async function contract(qr: Runner, changes: EvolveChange[]): Promise<void> {
  requireOwnTransactions(qr, "contract");
  const recording = await isRecording(qr);
  for (const change of changes) {
    const table = change.table;
    const oldC = oldColumn(change);
    if (change.kind === "drop-column") {
      await inShortTransaction(qr, (t) => run(t, [`ALTER TABLE public.${q(table)} DROP COLUMN IF EXISTS ${q(oldC)}`]));
      continue;
    }
    const newC = newColumn(change)!;
    // Done already (a crash after its commit): the old column is gone, or for a type change, the temporary one.
    if (!recording && !(await columnExists(qr, table, change.kind === "change-type" ? newC : oldC))) continue;
    const diff = await countDifferences(qr, change);
    if (diff.rows > 0) {
      throw new Error(`${table}: ${diff.rows} row${diff.rows === 1 ? "" : "s"} where ${oldC} and ${newC} differ (first key: ${diff.sampleKey}): nothing dropped; fix them (or undo the expand) and run migration:complete again`);
    }
    const renames = change.kind === "change-type" ? await indexesOn(qr, table, newC) : [];
    const final = change.kind === "change-type" ? oldC : newC;
    // One round trip in one short transaction: the table is locked for the server's work only (no rewrite, no scan).
    await inShortTransaction(qr, (t) => run(t, [
      ...dropTriggerSql(change),
      `ALTER TABLE public.${q(table)} DROP COLUMN IF EXISTS ${q(oldC)}`,
      ...(change.kind === "change-type"
        ? [`ALTER TABLE public.${q(table)} RENAME COLUMN ${q(newC)} TO ${q(oldC)}`, ...renames.map((index) => `ALTER INDEX public.${q(index.name)} RENAME TO ${q(counterpartIndex(index.name, newC, oldC))}`)]
        : []),
      ...(change.notNull ? [`ALTER TABLE public.${q(table)} ALTER COLUMN ${q(final)} SET NOT NULL`, `ALTER TABLE public.${q(table)} DROP CONSTRAINT IF EXISTS ${q(notNullCheck(table, newC))}`] : []),
      ...(change.default !== undefined ? [`ALTER TABLE public.${q(table)} ALTER COLUMN ${q(final)} SET DEFAULT ${change.default}`] : []),
      `DELETE FROM "${EVOLVE_TABLE}" WHERE id = ${sqlLiteral(watchId(change))}`,
    ]));
  }
}

/** Rolls phase 2 back: the old column back, trigger back, every value filled from the new column. */
export async function undoContract(qr: Runner, changes: EvolveChange[]): Promise<void> {
  requireOwnTransactions(qr, "undoing a contract");
  const recording = await isRecording(qr);
  for (const change of [...changes].reverse()) {
    const table = change.table;
    const oldC = oldColumn(change);
    if (change.kind === "drop-column") {
      // The values went with the column (the user named the drop; the run's backup has them).
      const def = change.default !== undefined ? ` DEFAULT ${change.default}${change.notNull ? " NOT NULL" : ""}` : "";
      await inShortTransaction(qr, (t) => t.query(`ALTER TABLE public.${q(table)} ADD COLUMN IF NOT EXISTS ${q(oldC)} ${change.type}${def}`));
      // Its indexes, as they were: built without blocking writes (this migration runs outside a transaction).
      for (const index of change.indexes ?? []) await qr.query(index.replace(/^CREATE (UNIQUE )?INDEX /, "CREATE $1INDEX CONCURRENTLY IF NOT EXISTS "));
      continue;
    }
    const newC = newColumn(change)!;
    // The old column as it was: a type change's own NOT NULL and default (a rename keeps them).
    const oldNotNull = change.kind === "change-type" ? (change.fromNotNull ?? change.notNull) : change.notNull;
    const oldDefault = change.kind === "change-type" && change.fromDefault !== undefined ? change.fromDefault : change.default;
    const done = !recording && (await columnExists(qr, table, change.kind === "change-type" ? newC : oldC));
    if (!done) {
      const renames = change.kind === "change-type" ? await indexesOn(qr, table, oldC) : [];
      await inShortTransaction(qr, (t) => run(t, [...bookkeepingSql(), ...conversionSql(change), triggerSql(change)[0], watchSql(change)]));
      await inShortTransaction(qr, (t) => run(t, [
        ...(change.kind === "change-type"
          ? [...renames.map((index) => `ALTER INDEX public.${q(index.name)} RENAME TO ${q(counterpartIndex(index.name, oldC, newC))}`), `ALTER TABLE public.${q(table)} RENAME COLUMN ${q(oldC)} TO ${q(newC)}`]
          : []),
        // In the expanded state the new column has no default: the trigger tells an old service's INSERT by its NULL.
        `ALTER TABLE public.${q(table)} ALTER COLUMN ${q(newC)} DROP DEFAULT`,
        `ALTER TABLE public.${q(table)} ADD COLUMN IF NOT EXISTS ${q(oldC)} ${oldType(change)}`,
        ...(oldNotNull ? [addNotNullCheckSql(table, oldC)] : []),
        triggerSql(change)[1],
      ]));
    }
    await backfill(qr, {
      table, name: cursorName(change, "undo-contract"), setLocal: { [BACKFILLING]: "on" },
      set: `${q(oldC)} = ${toOldSql(change, q(newC))}`, where: `${q(oldC)} IS NULL AND ${q(newC)} IS NOT NULL`,
    });
    if (oldNotNull) await validateNotNull(qr, table, oldC);
    if (oldDefault) await inShortTransaction(qr, (t) => t.query(`ALTER TABLE public.${q(table)} ALTER COLUMN ${q(oldC)} SET DEFAULT ${oldDefault}`));
    await copyIndexes(qr, table, newC, oldC, (index) => counterpartIndex(index, newC, oldC));
  }
}
