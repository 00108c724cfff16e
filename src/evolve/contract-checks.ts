// Before a contract: when did a client last write each old column (the sync trigger records it in
// migrations_evolve), and is that long enough ago (MIGRATION_CONTRACT_IDLE)? Facts only; the command decides.
import type { Queryable } from "../postgres/sql";
import { rows, tableExists } from "../postgres/sql";
import type { EvolveChange } from "./change";
import { oldColumn, watchId } from "./names";
import { EVOLVE_TABLE } from "./sync-trigger";

export interface OldColumnUse {
  table: string;
  column: string;
  /** Last write of the old column by a client, ISO time; null: none since the expand. */
  lastWrite: string | null;
  /** Seconds since then (server clock). */
  secondsAgo?: number;
  /** False when nothing watched it (a dropped column has no expand): the last write is unknown. */
  watched: boolean;
  /** Written within the idle window: an old service may still be running. */
  recent: boolean;
}

/** The changes a migration declares (`evolve = [...]`), or none. */
export function changesOf(migration: unknown): EvolveChange[] {
  const declared = (migration as { evolve?: unknown }).evolve;
  return Array.isArray(declared) ? (declared as EvolveChange[]) : [];
}

/** For each renamed or dropped column: its last write by a client, against `idle` (e.g. "5min"). */
export async function oldColumnUse(q: Queryable, changes: EvolveChange[], idle: string): Promise<OldColumnUse[]> {
  const present = await tableExists(q, EVOLVE_TABLE);
  const out: OldColumnUse[] = [];
  // A type change keeps the name: old and new services both write it, before and after the contract.
  for (const change of changes.filter((c) => c.kind !== "change-type")) {
    const base = { table: change.table, column: oldColumn(change) };
    const [row] = present
      ? await rows<{ last: Date | null; ago: number | null; recent: boolean }>(q,
        `SELECT old_written_at AS last, extract(epoch FROM now() - old_written_at)::float8 AS ago, coalesce(now() - old_written_at < $2::interval, false) AS recent FROM "${EVOLVE_TABLE}" WHERE id = $1`,
        [watchId(change), idle])
      : [];
    if (!row) out.push({ ...base, lastWrite: null, watched: false, recent: false });
    else out.push({ ...base, lastWrite: row.last ? row.last.toISOString() : null, ...(row.ago !== null ? { secondsAgo: Math.round(row.ago) } : {}), watched: true, recent: row.recent });
  }
  return out;
}
