// A lost connection (server restart, failover, network blip) told apart from every other failure,
// and the wait for the server to answer again: backoff within a budget, each try a fresh connection.

/** SQLSTATEs of a connection the server ended or refused while it stops or starts. */
const LOST_CODES = new Set(["57P01", "57P02", "57P03", "08000", "08001", "08003", "08006", "ECONNRESET", "ECONNREFUSED", "EPIPE", "ETIMEDOUT", "EHOSTUNREACH", "ENETUNREACH"]);
/** What pg, TypeORM and libpq tools (pg_dump) say when the connection goes away. */
const LOST_TEXT = /connection terminated|terminating connection|server closed the connection|connection refused|could not connect to server|connection to server .* failed|the database system is (starting up|shutting down|in recovery mode)|client has encountered a connection error|not queryable|ECONNRESET|ECONNREFUSED|EPIPE|read ETIMEDOUT|Connection ended|no connection to the server|cannot connect to /i;

/** Whether `error` (or a client program's stderr) says the connection was lost, not that the work failed. */
export function isConnectionLost(error: unknown): boolean {
  if (typeof error === "string") return LOST_TEXT.test(error);
  const e = error as { code?: string; message?: string; driverError?: unknown } | undefined;
  if (!e) return false;
  if (e.code && LOST_CODES.has(e.code)) return true;
  if (e.driverError && e.driverError !== error && isConnectionLost(e.driverError)) return true;
  return LOST_TEXT.test(String(e.message ?? ""));
}

/** The pause before try `attempt + 1`: 200 ms doubling up to 2 s (a restart is back within seconds). */
export function reconnectDelay(attempt: number): number {
  return Math.min(2_000, 200 * 2 ** (attempt - 1));
}

/**
 * Calls `attempt` until it succeeds, while it fails with a lost connection and `deadline` is not
 * past; any other failure, or the last lost one, is thrown.
 */
export async function untilReachable<T>(attempt: () => Promise<T>, deadline: number, signal?: AbortSignal): Promise<T> {
  for (let n = 1; ; n++) {
    try {
      return await attempt();
    } catch (error) {
      if (!isConnectionLost(error) || signal?.aborted) throw error;
      const delay = reconnectDelay(n);
      if (Date.now() + delay > deadline) throw error;
      await new Promise((r) => setTimeout(r, delay));
    }
  }
}
