// Applies one migration in one direction: the only place that decides on transactions and timeouts
// (like node-pg-migrate's runner). Each migration runs in its own transaction together with its
// bookkeeping rows, unless it sets `transaction = false` (e.g. CREATE INDEX CONCURRENTLY).
import type { DataSource, QueryRunner } from "typeorm";
import { recordApplied, recordHistory, recordReverted } from "./history";
import type { MigrationFile } from "./migration-files";

export interface Timeouts {
  /** Longest wait for a table lock before the migration gives up, e.g. "5s". */
  lockTimeout: string;
  /** Longest single statement, e.g. "15min". */
  statementTimeout: string;
}

export const DEFAULT_TIMEOUTS: Timeouts = { lockTimeout: "5s", statementTimeout: "15min" };

/** A migration may set its own timeouts: `timeouts = { statementTimeout: "2h" }`. */
interface MigrationOverrides {
  timeouts?: Partial<Timeouts>;
  transaction?: boolean;
}

export interface StepResult {
  name: string;
  direction: "up" | "down";
  durationMs: number;
}

async function setTimeouts(qr: QueryRunner, timeouts: Timeouts, local: boolean): Promise<void> {
  const scope = local ? "LOCAL " : "";
  // SET takes no bind parameters; the values come from our own config, validated by `parseDuration`.
  await qr.query(`SET ${scope}lock_timeout = '${timeouts.lockTimeout}'`);
  await qr.query(`SET ${scope}statement_timeout = '${timeouts.statementTimeout}'`);
  // If this process dies mid-statement (SIGKILL, lost host), the server notices within a second and
  // rolls the migration back, instead of holding its locks until the statement ends (PostgreSQL 14+).
  if (Number(String(qr.connection.driver.version ?? "0").split(".")[0]) >= 14) {
    await qr.query(`SET ${scope}client_connection_check_interval = '1s'`);
  }
}

export async function applyMigration(
  dataSource: DataSource,
  file: MigrationFile,
  direction: "up" | "down",
  context: {
    runId: string; command: string; timeouts: Timeouts; signal?: AbortSignal;
    /** Cancels a backend's statement from another connection (the run's server session), for Ctrl-C. */
    cancelBackend?: (pid: number) => Promise<unknown>;
  },
): Promise<StepResult> {
  const overrides = file.migration as unknown as MigrationOverrides;
  const timeouts = { ...context.timeouts, ...(overrides.timeouts ?? {}) };
  const inTransaction = overrides.transaction !== false;
  const qr = dataSource.createQueryRunner();
  const started = process.hrtime.bigint();
  let cancel: (() => void) | undefined;
  try {
    await qr.connect();
    if (context.signal) {
      // Ctrl-C cancels the running statement, so the migration rolls back now rather than at its end.
      const [{ pid }] = await qr.query(`SELECT pg_backend_pid() AS pid`);
      const cancelBackend = context.cancelBackend ?? ((p: number) => dataSource.query(`SELECT pg_cancel_backend($1)`, [p]));
      cancel = () => void cancelBackend(pid).catch(() => undefined);
      if (context.signal.aborted) throw new Error("interrupted");
      context.signal.addEventListener("abort", cancel, { once: true });
    }
    if (inTransaction) await qr.startTransaction();
    await setTimeouts(qr, timeouts, inTransaction);
    if (direction === "up") await file.migration.up(qr);
    else await file.migration.down(qr);
    const durationMs = Number(process.hrtime.bigint() - started) / 1e6;
    if (direction === "up") await recordApplied(qr, file);
    else await recordReverted(qr, file.name);
    await recordHistory(qr, { name: file.name, checksum: file.checksum, runId: context.runId, command: context.command, direction, durationMs });
    if (inTransaction) await qr.commitTransaction();
    return { name: file.name, direction, durationMs };
  } catch (error) {
    if (qr.isTransactionActive) await qr.rollbackTransaction().catch(() => undefined);
    throw error;
  } finally {
    if (cancel) context.signal?.removeEventListener("abort", cancel);
    if (!inTransaction) await qr.query("RESET lock_timeout; RESET statement_timeout; RESET client_connection_check_interval").catch(() => undefined);
    await qr.release();
  }
}

/** Checks a PostgreSQL duration setting such as "5s", "15min", "0". */
export function parseDuration(value: string, variable: string): string {
  if (!/^\d+\s*(ms|s|min|h|d)?$/.test(value.trim())) {
    throw new Error(`${variable} must be a duration like 5s, 500ms, 15min or 0 (got ${JSON.stringify(value)})`);
  }
  return value.trim();
}
