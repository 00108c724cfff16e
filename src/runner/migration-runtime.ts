// What the runner hands a running migration besides its query runner: its name, the run's timeouts,
// Ctrl-C, the expand/contract settings and a channel for progress events. It travels on TypeORM's
// `queryRunner.data` (a bag TypeORM leaves to its users), so helpers a migration calls (a batched
// backfill) find it without the migration passing it on; under the plain TypeORM CLI it is absent
// and the helpers fall back to the environment's settings.
import type { QueryRunner } from "typeorm";
import type { EvolveSettings, Timeouts } from "../config";

/** A backfill's progress, or a pause of it, as data (the CLI prints it). */
export interface BackfillEvent {
  kind: "backfill";
  migration?: string;
  table: string;
  state: "started" | "progress" | "throttled" | "resumed" | "done";
  /** Rows walked so far (the key range covered), and of them updated. */
  rowsScanned: number;
  rowsUpdated: number;
  /** Rows in the table (estimate at the start). */
  rowsTotal: number;
  rowsPerSecond: number;
  /** Seconds left at the current rate, when it can be told. */
  etaSeconds?: number;
  /** Set when it resumed a run that was stopped: the key it resumed after. */
  resumedAfter?: string;
  /** Why it waits (throttled): e.g. "replica 127.0.0.1 replay 12.3s behind (max 5s)". */
  reason?: string;
}

export type MigrationEvent = BackfillEvent;

export interface MigrationRuntime {
  migration: string;
  timeouts: Timeouts;
  settings?: EvolveSettings;
  signal?: AbortSignal;
  onEvent?: (event: MigrationEvent) => void;
}

const KEY = "aiMicroMigrations";

/** Attaches the runtime to a query runner before its migration runs. */
export function attachRuntime(qr: QueryRunner, runtime: MigrationRuntime): void {
  qr.data = { ...(qr.data ?? {}), [KEY]: runtime };
}

/** The runtime of the migration running on `qr`, if our runner runs it. */
export function runtimeOf(qr: QueryRunner): MigrationRuntime | undefined {
  return (qr.data as Record<string, unknown> | undefined)?.[KEY] as MigrationRuntime | undefined;
}
