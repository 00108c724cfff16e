// When a backfill should wait: a streaming replica is behind by more than the allowed lag, or the
// table's autovacuum to prevent wraparound is running (a backfill's dead rows would only make it
// longer). Each check is one cheap query; the answer is a reason to wait, or none.
//
// Replica lag is measured from positions, not from luck: each check samples the primary's current
// WAL position with the time; a replica is behind by the age of the oldest sample it has not
// replayed yet (replay_lsn below that sample's position). A paused replica (pg_wal_replay_pause())
// keeps its replay_lsn, so its lag grows with the clock, and drops to 0 once it replays again.
// pg_stat_replication's replay_lag is counted too when larger (it only moves while WAL flows).
import type { Queryable } from "../postgres/sql";
import { rows } from "../postgres/sql";

/** "16/B374D848" -> a number that orders like the position. */
export function lsnValue(lsn: string): bigint {
  const [hi, lo] = lsn.split("/");
  return (BigInt(`0x${hi}`) << 32n) + BigInt(`0x${lo}`);
}

interface Replica {
  name: string;
  replay: string | null;
  lag_seconds: number | null;
}

export interface ReplicaLag {
  replica: string;
  seconds: number;
}

/** Keeps the primary's WAL positions over time, to tell how far behind each replica is. */
export class ReplicaLagWatch {
  private samples: Array<{ at: number; lsn: bigint }> = [];

  constructor(private readonly now: () => number = Date.now) {}

  /** The replica furthest behind, or undefined when none streams (or this role may not see positions). */
  async check(q: Queryable): Promise<ReplicaLag | undefined> {
    const [row] = await rows<{ current: string | null; replicas: Replica[] | null }>(q, `
      SELECT CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_lsn()::text END AS current,
             (SELECT json_agg(json_build_object(
                 'name', coalesce(nullif(application_name, ''), host(client_addr), 'pid ' || pid),
                 'replay', replay_lsn::text,
                 'lag_seconds', extract(epoch FROM replay_lag)))
              FROM pg_stat_replication WHERE state = 'streaming') AS replicas`);
    if (!row?.current) return undefined;
    const at = this.now();
    this.samples.push({ at, lsn: lsnValue(row.current) });
    const replicas = (row.replicas ?? []).filter((r) => r.replay);
    if (!replicas.length) {
      this.samples = this.samples.slice(-1);
      return undefined;
    }
    let worst: ReplicaLag | undefined;
    for (const r of replicas) {
      const replay = lsnValue(r.replay!);
      const oldestUnreplayed = this.samples.find((s) => s.lsn > replay);
      const seconds = Math.max(oldestUnreplayed ? (at - oldestUnreplayed.at) / 1000 : 0, Number(r.lag_seconds ?? 0));
      if (!worst || seconds > worst.seconds) worst = { replica: r.name, seconds };
    }
    // Samples every replica has replayed tell nothing more.
    const slowest = replicas.map((r) => lsnValue(r.replay!)).reduce((a, b) => (a < b ? a : b));
    const firstNeeded = this.samples.findIndex((s) => s.lsn > slowest);
    this.samples = firstNeeded < 0 ? this.samples.slice(-1) : this.samples.slice(firstNeeded);
    return worst;
  }
}

/** Whether an autovacuum to prevent wraparound is running on `table` (as far as this role can see). */
export async function wraparoundVacuumRunning(q: Queryable, table: string): Promise<boolean> {
  const [row] = await rows<{ running: boolean }>(q, `
    SELECT EXISTS (SELECT 1 FROM pg_stat_progress_vacuum p JOIN pg_stat_activity a ON a.pid = p.pid
                   WHERE p.relid = to_regclass($1) AND a.query LIKE '%to prevent wraparound%') AS running`, [table]);
  return row?.running === true;
}

/** A reason to wait now, or undefined. */
export async function throttleReason(q: Queryable, watch: ReplicaLagWatch, table: string, maxLagSeconds: number): Promise<string | undefined> {
  const lag = await watch.check(q);
  if (lag && lag.seconds > maxLagSeconds) return `replica ${lag.replica} is ${lag.seconds.toFixed(1)}s behind in replay (max ${maxLagSeconds}s, MIGRATION_BACKFILL_MAX_REPLICA_LAG)`;
  if (await wraparoundVacuumRunning(q, table)) return `autovacuum to prevent wraparound is running on ${table}`;
  return undefined;
}
