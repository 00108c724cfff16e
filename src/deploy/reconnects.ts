// Reconnect, then finish: a run that loses a server (restart, failover, network blip) waits for it
// within MIGRATION_RECONNECT_BUDGET, takes its deploy locks again on a fresh connection (another
// run holding one stops this run: LockTakenError) and tries the interrupted work again; the caller
// first asks the database whether that work committed. A server still away when the budget is spent
// is marked unreachable: everything else on it fails at once, so the run ends within the budget.
import type { Config, DbTarget } from "../config";
import type { DbName } from "../databases";
import { MigrationError } from "../errors";
import { connectClient } from "../postgres/connect";
import { isConnectionLost, untilReachable } from "../postgres/reconnect";
import { LockTakenError, reopenSession, ServerSession, sessionAlive } from "../runner/locks";

/** Told when a server was lost and when it is back. */
export type ReconnectEvent = (event: { db: DbName; phase: "lost" | "back"; detail: string }) => void;

/** A server did not come back within the budget. */
export class UnreachableError extends MigrationError {}

const serverOf = (target: DbTarget) => {
  const u = new URL(target.url);
  return `${u.hostname}:${u.port || 5432}`;
};

const firstLine = (error: unknown) => String((error as Error)?.message ?? error).split("\n")[0];

export class Reconnects {
  private readonly unreachable = new Map<string, DbName>();
  /** Servers whose deploy lock another run took while this one was away: nothing more is done there. */
  private readonly lockLost = new Map<string, string>();

  constructor(
    private readonly config: Config,
    private readonly sessions: ServerSession[],
    private readonly runId: string,
    private readonly onEvent?: ReconnectEvent,
    private readonly signal?: AbortSignal,
  ) {}

  /** Databases whose server stayed away longer than the budget. */
  unreachableDbs(targets: DbTarget[]): DbName[] {
    return targets.filter((t) => this.unreachable.has(serverOf(t))).map((t) => t.db);
  }

  isUnreachable(target: DbTarget): boolean {
    return this.unreachable.has(serverOf(target));
  }

  /**
   * Runs `work`; when it fails on a lost connection, waits for the server (locks re-taken) and runs
   * it again, all within one budget. `work` learns from `retry` that an earlier try was cut off.
   */
  async run<T>(target: DbTarget, work: (retry: boolean) => Promise<T>): Promise<T> {
    const taken = this.lockLost.get(serverOf(target));
    if (taken) throw new LockTakenError(taken, target.db);
    let deadline: number | undefined;
    for (let retry = false; ; retry = true) {
      try {
        return await work(retry);
      } catch (error) {
        if (error instanceof UnreachableError || error instanceof LockTakenError || !isConnectionLost(error)) throw error;
        deadline ??= Date.now() + this.config.reconnectBudgetMs;
        await this.recover(target, error, deadline);
      }
    }
  }

  /** Lock sessions found dead (checked before each step) are reopened, or the run stops. */
  async checkSessions(): Promise<void> {
    for (const s of this.sessions) {
      if (this.unreachable.has(s.server) || !s.lost) continue;
      await this.recover(s.targets[0], new Error(`lost the deploy lock session to ${s.server}`));
    }
  }

  /**
   * Waits for `target`'s server: its lock session reopened with every lock it held, the database
   * answering. Throws LockTakenError, UnreachableError (budget spent), or what else went wrong.
   */
  async recover(target: DbTarget, cause: unknown, deadline = Date.now() + this.config.reconnectBudgetMs): Promise<void> {
    const server = serverOf(target);
    const budget = `${Math.round(this.config.reconnectBudgetMs / 1000)} s`;
    if (this.unreachable.has(server)) throw new UnreachableError(`${server} is unreachable (gave up after ${budget}, MIGRATION_RECONNECT_BUDGET)`, target.db);
    const started = Date.now();
    this.onEvent?.({ db: target.db, phase: "lost", detail: `connection to ${server} lost (${firstLine(cause)}); reconnecting for up to ${budget} (MIGRATION_RECONNECT_BUDGET)` });
    const session = this.sessions.find((s) => s.server === server);
    try {
      await untilReachable(async () => {
        if (session && !(await sessionAlive(session))) await reopenSession(session, this.config);
        const client = await connectClient(target, this.config.connectTimeoutMs, undefined, this.runId);
        await client.end().catch(() => undefined);
      }, deadline, this.signal);
    } catch (error) {
      if (error instanceof LockTakenError) this.lockLost.set(server, error.message);
      if (error instanceof LockTakenError || !isConnectionLost(error)) throw error;
      this.unreachable.set(server, target.db);
      throw new UnreachableError(`${server} is unreachable: gave up after ${budget} (MIGRATION_RECONNECT_BUDGET): ${firstLine(error)}`, target.db);
    }
    this.onEvent?.({ db: target.db, phase: "back", detail: `reconnected to ${server} after ${((Date.now() - started) / 1000).toFixed(1)} s${session?.locked.length ? "; deploy lock taken again" : ""}` });
  }
}
