// Applies one migration in one direction: the only place that decides on transactions, timeouts and
// lock retries (like node-pg-migrate's runner). Each migration runs in its own transaction together
// with its bookkeeping rows, unless it sets `transaction = false` (e.g. CREATE INDEX CONCURRENTLY).
// A lock that is not free within the short lock_timeout rolls the migration back and retries it
// later (lock-retries.ts), so the services' queries never queue behind it for long.
import type { DataSource, QueryRunner } from "typeorm";
import { recordStepSql } from "./history";
import { blocksNoWrites, concurrentIndexOf, describeBlockers, dropInvalidIndex, durationMs, isInvalidIndex, isLockTimeout, LockRetry, retryDelay, safeToRepeat, sleep } from "./lock-retries";
import type { MigrationFile } from "./migration-files";
import { DEFAULT_TIMEOUTS, parseDuration, type EvolveSettings, type Timeouts } from "../config";
import { attachRuntime, MigrationEvent } from "./migration-runtime";

// The defaults and the checks of the timeouts are settings (src/config.ts); re-exported for the callers here.
export { DEFAULT_TIMEOUTS, parseDuration };
export type { Timeouts };

/** A migration may set its own: `timeouts = { statementTimeout: "2h", lockRetryBudget: "30min" }`. */
interface MigrationOverrides {
  timeouts?: Partial<Timeouts>;
  transaction?: boolean;
}

export interface StepResult {
  name: string;
  direction: "up" | "down";
  durationMs: number;
  /** Tries that found a lock taken and were rolled back (or, outside a transaction, repeated). */
  lockRetries?: number;
}

export interface MigrationContext {
  runId: string;
  command: string;
  timeouts: Timeouts;
  signal?: AbortSignal;
  /** Cancels a backend's statement from another connection (the run's server session), for Ctrl-C. */
  cancelBackend?: (pid: number) => Promise<unknown>;
  /** Told before each retry. */
  onRetry?: (retry: LockRetry) => void;
  /** Expand/contract and backfill settings, for helpers the migration calls. */
  evolve?: EvolveSettings;
  /** Told what helpers inside the migration report (a backfill's progress). */
  onEvent?: (event: MigrationEvent) => void;
}

/** The SET statements of a migration's timeouts (SET takes no bind parameters: the values come from our own config, validated by `parseDuration`). */
function timeoutSettings(qr: QueryRunner, timeouts: Timeouts, local: boolean): string[] {
  const scope = local ? "LOCAL " : "";
  const settings = [`SET ${scope}lock_timeout = '${timeouts.lockTimeout}'`, `SET ${scope}statement_timeout = '${timeouts.statementTimeout}'`];
  // If this process dies mid-statement (SIGKILL, lost host), the server notices within a second and
  // rolls the migration back, instead of holding its locks until the statement ends (PostgreSQL 14+).
  if (Number(String(qr.connection.driver.version ?? "0").split(".")[0]) >= 14) {
    settings.push(`SET ${scope}client_connection_check_interval = '1s'`);
  }
  return settings;
}

type PgQuery = (...args: unknown[]) => unknown;

/**
 * Puts `replace(original)` in the place of `target.query`, as its own property; returns what puts
 * the original back (the prototype's again, when it had none of its own). Safe to call twice.
 */
function replaceQuery(target: object, replace: (original: PgQuery) => PgQuery): () => void {
  const holder = target as { query: PgQuery };
  const own = Object.prototype.hasOwnProperty.call(holder, "query");
  const original = holder.query;
  holder.query = replace(original);
  return () => {
    if (own) holder.query = original;
    else delete (holder as Partial<typeof holder>).query;
  };
}

/**
 * Runs one of TypeORM's transaction calls with `extra` sent in the same round trip as the
 * statement it sends (`extra; COMMIT`): TypeORM keeps track of the transaction as usual.
 */
async function along(qr: QueryRunner, statement: "COMMIT", extra: string, call: () => Promise<void>): Promise<void> {
  const restore = replaceQuery(qr, (original) => (sql, ...rest) => original.call(qr, sql === statement ? `${extra}; ${statement}` : sql, ...rest));
  try {
    await call();
  } finally {
    restore();
  }
}

/**
 * Starts the migration's transaction (`START TRANSACTION` and its SET LOCALs, `statements` of them)
 * in the same simple-query message as the first statement the connection sends next, the
 * migration's own or, if it sends none, the bookkeeping and COMMIT: one round trip fewer per
 * migration. The statements of one message run in order, each under the settings before it
 * (PostgreSQL 13+ times each on its own). A first statement with bind parameters (or a stream)
 * cannot share a message: the transaction's start is queued ahead of it, as its own query. TypeORM is
 * told the transaction started as usual. Returns what undoes the hook.
 */
async function beginWithFirstStatement(qr: QueryRunner, statements: string[]): Promise<() => void> {
  const client = (qr as unknown as { databaseConnection: { query: PgQuery; getTransactionStatus?(): string | null } }).databaseConnection;
  const prefix = ["START TRANSACTION", ...statements].join("; ");
  const restore = replaceQuery(client, (original) => (...args: unknown[]) => {
    restore();
    const [text, values] = args;
    if (typeof text === "string" && args.length <= 2 && (values === undefined || (Array.isArray(values) && !values.length))) {
      // One message, several results: the caller gets those of its own statements.
      return (original.call(client, `${prefix}; ${text}`) as Promise<unknown[]>).then(
        (results) => {
          const mine = results.slice(statements.length + 1);
          return mine.length === 1 ? mine[0] : mine;
        },
        async (error) => {
          // A syntax error anywhere in a message runs none of it: then the transaction starts now, so
          // a migration that catches the error goes on inside it, as TypeORM believes. Whether it
          // started is asked after a probe (the status the client knows at the error is the one before).
          const started = await (original.call(client, "SELECT 1") as Promise<unknown>).then(() => client.getTransactionStatus?.() !== "I", () => true);
          if (!started) await original.call(client, prefix);
          throw error;
        },
      );
    }
    // Queued first, the statement right behind it (the client sends its queries in order): a
    // transaction start that failed leaves the statement failing too.
    (original.call(client, prefix) as Promise<unknown>).catch(() => undefined);
    return original.apply(client, args);
  });
  // TypeORM's startTransaction sends START TRANSACTION through qr.query: the hook above sends it.
  const restoreQr = replaceQuery(qr, (query) => (sql, ...rest) => (sql === "START TRANSACTION" ? Promise.resolve([]) : query.call(qr, sql, ...rest)));
  try {
    await qr.startTransaction();
  } catch (error) {
    restore();
    throw error;
  } finally {
    restoreQr();
  }
  return restore;
}

/** Each pooled connection's backend pid, asked once per connection rather than once per migration. */
const backendPids = new WeakMap<object, number>();

async function backendPid(qr: QueryRunner): Promise<number> {
  const connection = (qr as unknown as { databaseConnection?: object }).databaseConnection;
  const known = connection && backendPids.get(connection);
  if (known) return known;
  const [{ pid }] = await qr.query(`SELECT pg_backend_pid() AS pid`);
  if (connection) backendPids.set(connection, pid);
  return pid;
}

/** The error when the budget is spent: what it waited for and who held it. */
function gaveUp(tries: number, timeouts: Timeouts, blockers: string | undefined): Error {
  const who = blockers ? `; blocked by ${blockers}` : "";
  const error = new Error(`lock not available: gave up after ${tries} tries of lock_timeout ${timeouts.lockTimeout} within ${timeouts.lockRetryBudget} (MIGRATION_LOCK_RETRY_BUDGET)${who}`);
  // PostgreSQL's code for it: also keeps it from reading as a connection time-out.
  return Object.assign(error, { code: "55P03" });
}

/** Between two tries: gives up at the budget, else says so and waits (backoff with jitter). */
async function waitToRetry(attempt: number, deadline: number, timeouts: Timeouts, context: MigrationContext, counter: { retries: number }, blockers?: string): Promise<void> {
  const delayMs = retryDelay(attempt);
  if (Date.now() + delayMs > deadline) throw gaveUp(attempt, timeouts, blockers);
  counter.retries++;
  context.onRetry?.({ attempt, delayMs, blockers });
  await sleep(delayMs, context.signal);
}

/**
 * Outside a transaction, each statement runs on its own: one that met a taken lock is repeated
 * when that is safe (lock-retries.ts `safeToRepeat`), and a concurrent index build that fails
 * leaves no INVALID index behind, nor finds one from an earlier failed run in its way.
 */
function statementRetrying(qr: QueryRunner, timeouts: Timeouts, context: MigrationContext, counter: { retries: number }): QueryRunner {
  const real = qr.query.bind(qr);
  const wrapped = Object.create(qr) as QueryRunner;
  const deadline = Date.now() + durationMs(timeouts.lockRetryBudget);
  const run = real as (...a: unknown[]) => Promise<unknown>;
  // A lock that blocks no writes is waited for as long as it takes (lock_timeout 0), then back to the short one.
  const patient = async <T>(body: () => Promise<T>): Promise<T> => {
    await run(`SET lock_timeout = 0`);
    try {
      return await body();
    } finally {
      await run(`SET lock_timeout = '${timeouts.lockTimeout}'`).catch(() => undefined);
    }
  };
  // A migration may open short transactions of its own (evolve's batches): inside one, a statement
  // that met a taken lock aborted the whole transaction, so it is the migration's to retry.
  let inBlock = false;
  wrapped.query = (async (sql: string, parameters?: unknown[], ...rest: unknown[]) => {
    if (/^\s*(BEGIN|START\s+TRANSACTION)\b/i.test(sql)) inBlock = true;
    else if (/^\s*(COMMIT|ROLLBACK|END|ABORT)\s*;?\s*$/i.test(sql)) inBlock = false;
    if (inBlock || /^\s*(COMMIT|ROLLBACK|END|ABORT)\s*;?\s*$/i.test(sql)) return run(sql, parameters, ...rest);
    const index = concurrentIndexOf(sql);
    if (index) await patient(() => dropInvalidIndex(qr, index)); // left by an earlier run that failed
    for (let attempt = 1; ; attempt++) {
      const tried = new Date();
      try {
        const result = blocksNoWrites(sql) ? await patient(() => run(sql, parameters, ...rest)) : await run(sql, parameters, ...rest);
        // IF NOT EXISTS skips an INVALID index of that name: built is not the same as usable.
        if (index && (await isInvalidIndex(qr, index))) throw new Error(`index "${index}" is INVALID after ${sql.trim().split(/\s+/).slice(0, 4).join(" ")}`);
        return result;
      } catch (error) {
        // A failed concurrent build leaves an INVALID index: gone before anything else happens.
        if (index) {
          await patient(() => dropInvalidIndex(qr, index)).catch((dropError: Error) => {
            throw new Error(`${(error as Error).message}; dropping the INVALID index "${index}" it left failed too: ${dropError.message}`);
          });
        }
        if (!isLockTimeout(error) || !safeToRepeat(sql) || context.signal?.aborted) throw error;
        await waitToRetry(attempt, deadline, timeouts, context, counter, await describeBlockers(qr, sql, tried));
        if (context.signal?.aborted) throw new Error("interrupted");
      }
    }
  }) as QueryRunner["query"];
  return wrapped;
}

/** Records the last statement a migration sent, for saying what blocked it. */
function recordingLast(qr: QueryRunner, last: { sql?: string }): QueryRunner {
  const real = qr.query.bind(qr);
  const wrapped = Object.create(qr) as QueryRunner;
  wrapped.query = ((sql: string, ...rest: unknown[]) => {
    last.sql = sql;
    return (real as (...a: unknown[]) => Promise<unknown>)(sql, ...rest);
  }) as QueryRunner["query"];
  return wrapped;
}

/** One try: the migration and its bookkeeping, committed together (in a transaction) or as they go. */
async function runOnce(qr: QueryRunner, file: MigrationFile, direction: "up" | "down", context: MigrationContext, timeouts: Timeouts, inTransaction: boolean, counter: { retries: number }, last: { sql?: string }): Promise<number> {
  const started = process.hrtime.bigint();
  const settings = timeoutSettings(qr, timeouts, inTransaction);
  const unhook = inTransaction ? await beginWithFirstStatement(qr, settings) : (await qr.query(settings.join("; ")), undefined);
  try {
    const runner = inTransaction ? recordingLast(qr, last) : statementRetrying(qr, timeouts, context, counter);
    attachRuntime(qr, { migration: file.name, timeouts, settings: context.evolve, signal: context.signal, onEvent: context.onEvent });
    if (direction === "up") await file.migration.up(runner);
    else await file.migration.down(runner);
    const durationMs = Number(process.hrtime.bigint() - started) / 1e6;
    // Recorded in the migration's transaction: both happen, or neither.
    const record = recordStepSql(file, { name: file.name, checksum: file.checksum, runId: context.runId, command: context.command, direction, durationMs });
    if (inTransaction) await along(qr, "COMMIT", record, () => qr.commitTransaction());
    else await qr.query(record);
    return durationMs;
  } finally {
    unhook?.(); // a migration that failed before sending anything: its ROLLBACK needs no transaction start
  }
}

export async function applyMigration(dataSource: DataSource, file: MigrationFile, direction: "up" | "down", context: MigrationContext): Promise<StepResult> {
  const overrides = file.migration as unknown as MigrationOverrides;
  const timeouts = { ...context.timeouts, ...(overrides.timeouts ?? {}) };
  const inTransaction = overrides.transaction !== false;
  const qr = dataSource.createQueryRunner();
  const counter = { retries: 0 };
  const deadline = Date.now() + durationMs(timeouts.lockRetryBudget);
  let cancel: (() => void) | undefined;
  try {
    await qr.connect();
    if (context.signal) {
      // Ctrl-C cancels the running statement, so the migration rolls back now rather than at its end.
      const pid = await backendPid(qr);
      const cancelBackend = context.cancelBackend ?? ((p: number) => dataSource.query(`SELECT pg_cancel_backend($1)`, [p]));
      cancel = () => void cancelBackend(pid).catch(() => undefined);
      if (context.signal.aborted) throw new Error("interrupted");
      context.signal.addEventListener("abort", cancel, { once: true });
    }
    for (let attempt = 1; ; attempt++) {
      const last: { sql?: string } = {};
      const tried = new Date();
      try {
        const durationMs = await runOnce(qr, file, direction, context, timeouts, inTransaction, counter, last);
        return { name: file.name, direction, durationMs, ...(counter.retries ? { lockRetries: counter.retries } : {}) };
      } catch (error) {
        if (qr.isTransactionActive) await qr.rollbackTransaction().catch(() => undefined);
        // In a transaction, a taken lock rolls the whole migration back: it is tried again later.
        if (!inTransaction || !isLockTimeout(error) || context.signal?.aborted) throw error;
        await waitToRetry(attempt, deadline, timeouts, context, counter, await describeBlockers(qr, last.sql, tried));
        if (context.signal?.aborted) throw new Error("interrupted");
      }
    }
  } finally {
    if (cancel) context.signal?.removeEventListener("abort", cancel);
    if (!inTransaction) await qr.query("RESET lock_timeout; RESET statement_timeout; RESET client_connection_check_interval").catch(() => undefined);
    await qr.release();
  }
}
