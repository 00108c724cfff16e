// One short transaction of a migration that manages its own (`transaction = false`): the run's
// lock_timeout for each try, rolled back and retried with backoff when a lock (or a deadlock with a
// service's write) got in the way, within the run's retry budget. Never a lock held between two.
import type { QueryRunner } from "typeorm";
import { DEFAULT_TIMEOUTS, Timeouts } from "../runner/migrator";
import { durationMs, isLockTimeout, retryDelay, sleep } from "../runner/lock-retries";
import { runtimeOf } from "../runner/migration-runtime";

const DEADLOCK = "40P01";

/** The run's timeouts, or the defaults when the plain TypeORM CLI runs the migration. */
export function timeoutsOf(qr: QueryRunner): Timeouts {
  return runtimeOf(qr)?.timeouts ?? DEFAULT_TIMEOUTS;
}

/** Throws when the migration runs inside one transaction: its own short ones need `transaction = false`. */
export function requireOwnTransactions(qr: QueryRunner, what: string): void {
  if (qr.isTransactionActive) {
    throw new Error(`${what} runs in short transactions of its own: declare \`transaction = false\` in the migration`);
  }
}

/**
 * Runs `body` in a transaction of its own with the run's lock_timeout; a lock not free in time, or
 * a deadlock, rolls it back and tries again until the retry budget is spent. Returns body's result.
 *
 * @example await inShortTransaction(queryRunner, async (q) => { await q.query(`ALTER TABLE ...`); });
 */
export async function inShortTransaction<T>(qr: QueryRunner, body: (q: QueryRunner) => Promise<T>): Promise<T> {
  const timeouts = timeoutsOf(qr);
  const signal = runtimeOf(qr)?.signal;
  const deadline = Date.now() + durationMs(timeouts.lockRetryBudget);
  for (let attempt = 1; ; attempt++) {
    await qr.query("BEGIN");
    try {
      await qr.query(`SET LOCAL lock_timeout = '${timeouts.lockTimeout}'`);
      const result = await body(qr);
      await qr.query("COMMIT");
      return result;
    } catch (error) {
      await qr.query("ROLLBACK").catch(() => undefined);
      const retryable = isLockTimeout(error) || (error as { code?: string })?.code === DEADLOCK;
      const delay = retryDelay(attempt);
      if (!retryable || signal?.aborted || Date.now() + delay > deadline) throw error;
      await sleep(delay, signal);
      if (signal?.aborted) throw new Error("interrupted");
    }
  }
}
