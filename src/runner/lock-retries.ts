// Lock waits that never queue the services (GitLab's with_lock_retries, pgroll's lock_timeout): a
// migration statement waits for a table lock only for a short lock_timeout. While it waits, every
// other query on that table queues behind it; so rather than wait long, it gives up, the migration
// rolls back, waits a while (exponential backoff with jitter, so two runners do not retry in step)
// and tries again, until a total budget is spent. Outside a transaction only statements that are
// safe to repeat are retried, one by one.
import { targetTable } from "../postgres/sql-text";
import { Queryable, rows } from "../postgres/sql";

/** How long one statement may wait for a lock, and how long to keep retrying. */
export interface LockRetryPolicy {
  /** lock_timeout of each try, e.g. "100ms". */
  lockTimeout: string;
  /** Total time to keep retrying, e.g. "5min"; "0" tries once. */
  lockRetryBudget: string;
}

/** A retry about to happen: what blocked the lock, and when the next try starts. */
export interface LockRetry {
  attempt: number;
  delayMs: number;
  /** Who held the lock, as far as this role may see (`pid 123 since 12:00:01Z: SELECT ...`). */
  blockers?: string;
}

const FIRST_DELAY_MS = 200;
const MAX_DELAY_MS = 5_000;

/** PostgreSQL's lock_not_available: lock_timeout expired (or NOWAIT). */
export function isLockTimeout(error: unknown): boolean {
  return (error as { code?: string })?.code === "55P03";
}

/** "100ms", "5s", "2min", "1h", "0" -> milliseconds (a number alone is milliseconds, as in PostgreSQL). */
export function durationMs(value: string): number {
  const m = /^(\d+)\s*(ms|s|min|h|d)?$/.exec(value.trim());
  if (!m) throw new Error(`not a duration: ${JSON.stringify(value)}`);
  const unit = { ms: 1, s: 1_000, min: 60_000, h: 3_600_000, d: 86_400_000 }[m[2] ?? "ms"]!;
  return Number(m[1]) * unit;
}

/** The wait before try `attempt + 1`: doubling from 200 ms up to 5 s, each drawn from [d/2, d]. */
export function retryDelay(attempt: number, random: () => number = Math.random): number {
  const ceiling = Math.min(MAX_DELAY_MS, FIRST_DELAY_MS * 2 ** (attempt - 1));
  return Math.round(ceiling / 2 + random() * (ceiling / 2));
}

/**
 * Whether a statement that failed on a lock may simply run again outside a transaction: it had
 * no effect (it never got its lock), and running it twice ends the same as running it once.
 */
export function safeToRepeat(statement: string): boolean {
  const s = statement.trim();
  return /^(SELECT|SET|RESET|SHOW|ANALYZE|VACUUM)\b/i.test(s)
    || /^ALTER\s+TABLE\b.*\bVALIDATE\s+CONSTRAINT\b/is.test(s)
    || /^(CREATE|DROP)\b.*\bIF\s+(NOT\s+)?EXISTS\b/is.test(s);
}

/** The index a `CREATE [UNIQUE] INDEX CONCURRENTLY` statement builds (it leaves an INVALID one when it fails). */
export function concurrentIndexOf(statement: string): string | undefined {
  const m = /^\s*CREATE\s+(?:UNIQUE\s+)?INDEX\s+CONCURRENTLY\s+(?:IF\s+NOT\s+EXISTS\s+)?("(?:[^"]|"")+"|[A-Za-z_][\w$]*)/i.exec(statement);
  return m ? (m[1].startsWith('"') ? m[1].slice(1, -1).replace(/""/g, '"') : m[1].toLowerCase()) : undefined;
}

/** Drops `index` if it is INVALID (left by a failed concurrent build). Returns whether it did. */
export async function dropInvalidIndex(q: Queryable, index: string): Promise<boolean> {
  if (!(await isInvalidIndex(q, index))) return false;
  await q.query(`DROP INDEX CONCURRENTLY IF EXISTS "${index.replace(/"/g, '""')}"`);
  return true;
}

/**
 * Who holds a lock on the table `statement` acts on, for the message: pid, since when, what it
 * runs. Undefined when the table cannot be told or nothing is seen (the role may not see others).
 */
export async function describeBlockers(q: Queryable, statement: string | undefined, since?: Date): Promise<string | undefined> {
  const table = statement ? targetTable(statement.trim()) : undefined;
  if (!table) return undefined;
  try {
    const found = await rows<{ pid: number; query_start: Date | null; query: string | null }>(
      q,
      `SELECT DISTINCT a.pid, a.query_start, left(regexp_replace(a.query, '\\s+', ' ', 'g'), 80) AS query
       FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
       WHERE l.relation = to_regclass($1) AND l.granted AND l.pid <> pg_backend_pid()
         AND ($2::timestamptz IS NULL OR a.xact_start <= $2)
       ORDER BY a.query_start NULLS LAST LIMIT 3`,
      [table, since ?? null],
    );
    if (!found.length) return undefined;
    // Only sessions whose transaction began before our try: those queued behind us got their lock after.
    return found.map((b) => `pid ${b.pid}${b.query_start ? ` (query started ${b.query_start.toISOString()})` : ""}${b.query ? `: ${b.query.replace(/;\s*$/, "")}` : ""}`).join("; ");
  } catch {
    return undefined;
  }
}

/** Waits `ms`, or less when `signal` aborts; leaves no listener behind. */
export const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener("abort", done, { once: true });
  });

/**
 * Statements whose lock (SHARE UPDATE EXCLUSIVE) never blocks the services' reads and writes, so
 * they may wait for it as long as it takes: a lock_timeout there would only fail a concurrent index
 * build half way (leaving an INVALID index) to protect nobody.
 */
export function blocksNoWrites(statement: string): boolean {
  const s = statement.trim();
  return /^(CREATE\s+(UNIQUE\s+)?INDEX|DROP\s+INDEX|REINDEX\b.*)\s+CONCURRENTLY\b/is.test(s) || /^ALTER\s+TABLE\b.*\bVALIDATE\s+CONSTRAINT\b/is.test(s);
}

/** Whether `index` exists and is INVALID. */
export async function isInvalidIndex(q: Queryable, index: string): Promise<boolean> {
  const [row] = await rows<{ invalid: boolean }>(
    q, `SELECT NOT i.indisvalid AS invalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname = $1 AND pg_table_is_visible(c.oid)`, [index],
  );
  return row?.invalid === true;
}
