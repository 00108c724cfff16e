// The trigger that keeps the old and the new column equal while old and new services both run.
// Which column a statement changed decides the direction: an INSERT that left the new column empty
// came from a service writing the old name; an UPDATE compares NEW with OLD. A client needs to know
// nothing of this (no search_path, no session setting). Every write of the old column is recorded,
// at most once a second and never waiting for a lock (SKIP LOCKED), in `migrations_evolve`, so that
// migration:complete can tell when a client last used the old name.
import { quoteIdent as q } from "../postgres/sql";
import type { EvolveChange } from "./change";
import { fitName, newColumn, oldColumn, syncName, watchId } from "./names";

export const EVOLVE_TABLE = "migrations_evolve";
const TOUCH = "migrations_evolve_touch";
/** Set (locally) by the expand's backfill batches: the sync trigger leaves them alone. */
export const BACKFILLING = "migrations.evolve_backfill";

const literal = (s: string) => `'${s.replace(/'/g, "''")}'`;

/** The bookkeeping table and the function the trigger records old-column writes with. */
export function bookkeepingSql(): string[] {
  return [
    `CREATE TABLE IF NOT EXISTS "${EVOLVE_TABLE}" ("id" text PRIMARY KEY, "table_name" text NOT NULL, "old_column" text NOT NULL, "new_column" text, "kind" text NOT NULL, "expanded_at" timestamptz NOT NULL DEFAULT now(), "old_written_at" timestamptz)`,
    // SECURITY DEFINER: the services' roles need no privilege on the bookkeeping table.
    `CREATE OR REPLACE FUNCTION public."${TOUCH}"(watched text) RETURNS void LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, public AS $evolve$
  UPDATE public."${EVOLVE_TABLE}" SET old_written_at = now()
   WHERE id = (SELECT id FROM public."${EVOLVE_TABLE}" WHERE id = watched AND (old_written_at IS NULL OR old_written_at < now() - interval '1 second') FOR UPDATE SKIP LOCKED)
$evolve$`,
  ];
}

export function oldType(change: EvolveChange): string {
  return change.kind === "change-type" ? change.fromType : change.type;
}

export function newType(change: EvolveChange): string {
  return change.kind === "change-type" ? change.toType : change.type;
}

/** SQL converting an old-column value (`expr`) for the new column; plain assignment casts (they check lengths). */
export function toNewSql(change: EvolveChange, expr: string): string {
  return change.kind === "change-type" && change.toNew ? `public.${q(fitName(`${syncName(change)}_to_new`))}(${expr})` : expr;
}

/** SQL converting a new-column value back to the old type: what the old value must equal (no value lost). */
export function toOldSql(change: EvolveChange, expr: string): string {
  if (change.kind !== "change-type") return expr;
  return change.toOld ? `public.${q(fitName(`${syncName(change)}_to_old`))}(${expr})` : `CAST(${expr} AS ${change.fromType})`;
}

/** Conversion functions (only for a type change given toNew/toOld expressions over the column's name). */
export function conversionSql(change: EvolveChange): string[] {
  if (change.kind !== "change-type") return [];
  const out: string[] = [];
  const col = q(change.column);
  if (change.toNew) out.push(`CREATE OR REPLACE FUNCTION public.${q(fitName(`${syncName(change)}_to_new`))}(${col} ${change.fromType}) RETURNS ${change.toType} LANGUAGE sql IMMUTABLE AS $evolve$ SELECT ${change.toNew} $evolve$`);
  if (change.toOld) out.push(`CREATE OR REPLACE FUNCTION public.${q(fitName(`${syncName(change)}_to_old`))}(${col} ${change.toType}) RETURNS ${change.fromType} LANGUAGE sql IMMUTABLE AS $evolve$ SELECT ${change.toOld} $evolve$`);
  return out;
}

/** The trigger function and the trigger, both replaceable (a rerun of a phase changes nothing). */
export function triggerSql(change: EvolveChange): string[] {
  const oldC = `NEW.${q(oldColumn(change))}`;
  const newC = `NEW.${q(newColumn(change)!)}`;
  const name = q(syncName(change));
  const touch = `PERFORM public."${TOUCH}"(${literal(watchId(change))});`;
  const body = `
BEGIN
  IF TG_OP = 'INSERT' THEN
    IF ${newC} IS NULL THEN
      IF ${oldC} IS NOT NULL THEN
        ${newC} := ${toNewSql(change, oldC)};
        ${touch}
      END IF;
    ELSIF ${oldC} IS DISTINCT FROM ${toOldSql(change, newC)} THEN
      ${oldC} := ${toOldSql(change, newC)};
    END IF;
  ELSIF ${newC} IS DISTINCT FROM OLD.${q(newColumn(change)!)} THEN
    IF ${oldC} IS DISTINCT FROM ${toOldSql(change, newC)} THEN
      ${oldC} := ${toOldSql(change, newC)};
    END IF;
  ELSIF ${oldC} IS DISTINCT FROM OLD.${q(oldColumn(change))} THEN
    ${newC} := ${toNewSql(change, oldC)};
    ${touch}
  END IF;
  RETURN NEW;
END`;
  return [
    `CREATE OR REPLACE FUNCTION public.${name}() RETURNS trigger LANGUAGE plpgsql AS $evolve$${body}
$evolve$`,
    // Not for the expand's own backfill batches, which write exactly what the trigger would (a WHEN is
    // checked without calling the function: the backfill goes faster and holds its rows for less).
    `CREATE OR REPLACE TRIGGER ${name} BEFORE INSERT OR UPDATE ON public.${q(change.table)} FOR EACH ROW WHEN (current_setting('${BACKFILLING}', true) IS DISTINCT FROM 'on') EXECUTE FUNCTION public.${name}()`,
  ];
}

/** Drops the trigger and its functions. */
export function dropTriggerSql(change: EvolveChange): string[] {
  const name = syncName(change);
  return [
    `DROP TRIGGER IF EXISTS ${q(name)} ON public.${q(change.table)}`,
    `DROP FUNCTION IF EXISTS public.${q(name)}()`,
    ...(change.kind === "change-type"
      ? [`DROP FUNCTION IF EXISTS public.${q(fitName(`${name}_to_new`))}(${change.fromType})`, `DROP FUNCTION IF EXISTS public.${q(fitName(`${name}_to_old`))}(${change.toType})`]
      : []),
  ];
}

/** Starts (or restarts) watching the old column's writes. */
export function watchSql(change: EvolveChange): string {
  return `INSERT INTO "${EVOLVE_TABLE}" (id, table_name, old_column, new_column, kind) VALUES (${literal(watchId(change))}, ${literal(change.table)}, ${literal(oldColumn(change))}, ${newColumn(change) ? literal(newColumn(change)!) : "NULL"}, ${literal(change.kind)})
   ON CONFLICT (id) DO UPDATE SET new_column = EXCLUDED.new_column, kind = EXCLUDED.kind`;
}
