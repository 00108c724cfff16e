// The names expand/contract gives what it creates: the temporary column of a type change, the sync
// trigger and its functions, the bookkeeping row. Derived from the change alone, so every phase
// (and its rollback, in another process, days later) finds them again. PostgreSQL cuts names at 63
// bytes: a long one keeps a hash of the whole instead.
import * as crypto from "crypto";
import type { EvolveChange } from "./change";

const MAX = 63;

export function fitName(name: string): string {
  if (Buffer.byteLength(name) <= MAX) return name;
  const hash = crypto.createHash("sha256").update(name).digest("hex").slice(0, 8);
  return `${Buffer.from(name).subarray(0, MAX - 9).toString().replace(/\uFFFD+$/, "")}_${hash}`;
}

/** The column old services write. */
export function oldColumn(change: EvolveChange): string {
  return change.kind === "rename-column" ? change.from : change.column;
}

/** The column the expand adds (a type change's temporary name), undefined for a drop. */
export function newColumn(change: EvolveChange): string | undefined {
  if (change.kind === "rename-column") return change.to;
  if (change.kind === "change-type") return fitName(`${change.column}__new`);
  return undefined;
}

/** Key of the change in `migrations_evolve`: `profiles.phone`. */
export function watchId(change: EvolveChange): string {
  return `${change.table}.${oldColumn(change)}`;
}

/** Base of the trigger's and functions' names. */
export function syncName(change: EvolveChange): string {
  return fitName(`migrations_evolve_${change.table}_${oldColumn(change)}`);
}

/** The name of an index on the other column: `idx_profiles_phone` <-> `idx_profiles_phone_number`. */
export function counterpartIndex(index: string, from: string, to: string): string {
  return fitName(index.includes(from) ? index.replace(from, to) : `${index}_${to}`);
}
