// Squashed history: a squash migration (migration:squash) declares the migrations it `replaces`.
// A database that applied all of them is the squash applied, under another history: it is seen so
// when its state is read, and its history is rewritten to the squash under the deploy lock, with
// the replaced rows kept in `migrations_squashed`. A database that applied only some of them cannot
// take the squash and is refused by name: it must first deploy a release that still has them.
import type { DataSource } from "typeorm";
import type { AppliedMigration, HistoryEntry } from "./history";
import { ensureBookkeeping, recordedChecksums, recordHistory } from "./history";
import type { MigrationFile } from "./migration-files";

export interface SquashAdoption {
  squash: MigrationFile;
  /** The applied migrations it stands for, in the order they were applied. */
  replaced: AppliedMigration[];
}

export interface SquashGap {
  squash: MigrationFile;
  applied: string[];
  missing: string[];
}

export interface SquashView {
  /** The applied list as it is once every adoption is written: each squash in place of what it replaces. */
  applied: AppliedMigration[];
  adoptions: SquashAdoption[];
  gaps: SquashGap[];
}

/**
 * How the squash migrations among `files` stand in a database with `applied`: adopted (every
 * replaced one applied, the squash not yet recorded), a gap (some applied), or neither.
 *
 * @example squashView(files, applied).gaps // [{ squash, applied: ["Init1795..."], missing: ["AddX1796..."] }]
 */
export function squashView(files: MigrationFile[], applied: AppliedMigration[]): SquashView {
  const view: SquashView = { applied, adoptions: [], gaps: [] };
  const names = new Set(applied.map((a) => a.name));
  for (const squash of files.filter((f) => f.replaces?.length && !names.has(f.name))) {
    const replaces = new Set(squash.replaces);
    const replaced = view.applied.filter((a) => replaces.has(a.name));
    if (!replaced.length) continue;
    if (replaced.length < replaces.size) {
      const have = new Set(replaced.map((r) => r.name));
      view.gaps.push({ squash, applied: [...have], missing: squash.replaces!.filter((n) => !have.has(n)) });
      continue;
    }
    view.adoptions.push({ squash, replaced });
    const at = view.applied.findIndex((a) => replaces.has(a.name));
    const rest = view.applied.filter((a) => !replaces.has(a.name));
    rest.splice(at, 0, { id: replaced[0].id, timestamp: squash.timestamp, name: squash.name });
    view.applied = rest;
  }
  return view;
}

export async function ensureSquashedTable(q: { query(sql: string): Promise<unknown> }): Promise<void> {
  await q.query(`CREATE TABLE IF NOT EXISTS "migrations_squashed" (
    "id" SERIAL PRIMARY KEY,
    "squash" character varying NOT NULL,
    "name" character varying NOT NULL,
    "timestamp" bigint NOT NULL,
    "checksum" character varying,
    "run_id" character varying NOT NULL,
    "squashed_at" timestamptz NOT NULL DEFAULT now(),
    "squashed_by" character varying NOT NULL DEFAULT current_user)`);
}

/**
 * Rewrites a database's history to `squash` in one transaction (the caller holds the deploy lock):
 * the replaced rows leave `migrations` for `migrations_squashed` (with the checksum each was
 * applied with), the squash takes their place, and `migrations_history` records it with the
 * squash file's checksum, so its checksum is verified like any other from then on.
 */
export async function rewriteToSquash(dataSource: DataSource, adoption: SquashAdoption, history: HistoryEntry[], runId: string, command: string): Promise<void> {
  await ensureBookkeeping(dataSource);
  await ensureSquashedTable(dataSource);
  const checksums = recordedChecksums(history);
  await dataSource.transaction(async (manager) => {
    for (const r of adoption.replaced) {
      await manager.query(`INSERT INTO "migrations_squashed" ("squash", "name", "timestamp", "checksum", "run_id") VALUES ($1, $2, $3, $4, $5)`, [adoption.squash.name, r.name, r.timestamp, checksums.get(r.name) ?? null, runId]);
    }
    await manager.query(`DELETE FROM "migrations" WHERE "name" = ANY($1)`, [adoption.replaced.map((r) => r.name)]);
    await manager.query(`INSERT INTO "migrations" ("timestamp", "name") VALUES ($1, $2)`, [adoption.squash.timestamp, adoption.squash.name]);
    await recordHistory(manager, { name: adoption.squash.name, checksum: adoption.squash.checksum, runId, direction: "squash", command, durationMs: 0 });
  });
}
