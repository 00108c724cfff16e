// Human output of each command's report: short, one line per database or step.
import type { RunReport } from "../src/commands/run";
import type { BackfillEvent } from "../src/runner/migration-runtime";
import type { RevertReport } from "../src/commands/revert";
import type { ShowReport } from "../src/commands/show";
import type { GenerateReport } from "../src/commands/generate";
import type { BackupReport } from "../src/commands/backup";
import type { RestoreReport } from "../src/backup/restore";
import type { CheckReport } from "../src/commands/check";
import type { BaselineReport } from "../src/commands/baseline";
import type { RepairReport } from "../src/commands/repair";
import type { SquashReport } from "../src/commands/squash";
import type { LockHolder } from "../src/runner/locks";
import type { MaintenanceReport } from "../src/commands/maintenance";
import type { EnvironmentCell, EnvironmentsReport } from "../src/commands/environments";
import type { HardStopReport } from "../src/deploy/hard-stop";
import type { PrunedRun } from "../src/backup/backup";

const ms = (n: number) => (n >= 1000 ? `${(n / 1000).toFixed(1)} s` : `${Math.round(n)} ms`);

function sqlBlock(sql: Record<string, string[]> | undefined): void {
  for (const [name, statements] of Object.entries(sql ?? {})) {
    console.log(`  -- ${name}`);
    for (const s of statements) console.log(`  ${s.replace(/\s+$/, "")};`);
  }
}

/** Many lines in one write: a run or show over 10,000 migrations prints them in milliseconds. */
function lines(list: string[]): void {
  if (list.length) process.stdout.write(list.join("\n") + "\n");
}

const running = new Map<string, { started: number; timer: NodeJS.Timeout }>();

/** Shows a step only once it has run for 2 s, then every 10 s: quick steps stay silent. */
export function progress(event: { db: string; step: string; detail?: string; phase: "start" | "end" }): void {
  const key = `${event.db}: ${event.step}${event.detail ? ` ${event.detail}` : ""}`;
  if (event.phase === "end") {
    const r = running.get(key);
    if (r) clearTimeout(r.timer);
    running.delete(key);
    return;
  }
  const started = Date.now();
  const tick = (delay: number) => {
    const timer = setTimeout(() => {
      console.error(`${key}... ${Math.round((Date.now() - started) / 1000)} s`);
      tick(10_000);
    }, delay);
    timer.unref();
    running.set(key, { started, timer });
  };
  tick(2_000);
}

/** A run that waits for another's deploy lock says whose, since when, and for how long it will wait. */
/** Before anything changes: what a run or revert drops that holds data (stderr, so --json stays parseable). */
export function dataLoss(db: string, lines: string[]): void {
  for (const line of lines) console.error(`warning: ${db}: ${line}`);
}

export function waiting(event: { db: string; holder?: LockHolder; waitMs: number }): void {
  const h = event.holder;
  const who = h ? `${h.runId ? `run ${h.runId}` : "another session"} (pid ${h.pid}${h.since ? `, since ${h.since.toISOString().replace(/\.\d+Z$/, "Z")}` : ""})` : "another run";
  console.error(`${event.db}: waiting for the deploy lock held by ${who}; up to ${Math.round(event.waitMs / 1000)} s (MIGRATION_LOCK_WAIT_MS)`);
}

/** A migration met a taken lock, rolled back, and tries again after a pause. */
export function lockRetry(event: { db: string; migration: string; attempt: number; delayMs: number; blockers?: string }): void {
  console.error(`${event.db}: ${event.migration}: lock not available${event.blockers ? ` (held by ${event.blockers})` : ""}; rolled back, try ${event.attempt + 1} in ${(event.delayMs / 1000).toFixed(1)} s`);
}

/** A server was lost mid-run, or is back. */
export function reconnect(event: { db: string; phase: "lost" | "back"; detail: string }): void {
  console.error(`${event.db}: ${event.detail}`);
}

/** The second Ctrl-C: what the run leaves, before it exits (also as JSON with --json). */
export function hardStop(report: HardStopReport, json: boolean): void {
  if (json) {
    console.log(JSON.stringify(report, null, 2));
    return;
  }
  console.error(`hard stop: run ${report.runId} exits now; the migration running now is rolled back by the server`);
  for (const d of report.databases) {
    const left = d.left.map((l) => `${l.name}${l.direction === "down" ? " (reverted)" : ""}`);
    console.error(`${d.db}: ${left.length ? `applied by this run and NOT undone: ${left.join(", ")}` : "nothing of this run applied"}`);
  }
  console.error(`maintenance mode: ${report.maintenanceOn ? "left ON by this run" : "not changed by this run"}`);
  console.error(`to finish the job: ${report.finish}${report.undo ? ` (or to undo this run instead: ${report.undo})` : ""}`);
}

/** Retention's removals, one line each. */
export function pruned(runs: PrunedRun[] | undefined, keep?: number): void {
  for (const p of runs ?? []) console.log(`removed old backup ${p.runId} (${p.dbs.join(", ")}: ${keep ? `the newest ${keep} of each are kept` : "newer backups of each are kept"})`);
}

/** Migrations (rows, timeline order) against environments (columns). */
export function environments(report: EnvironmentsReport): void {
  for (const e of report.environments) console.log(`${e.name}: ${e.error ? `cannot be read: ${e.error}` : e.server}`);
  const cell = (c: EnvironmentCell | undefined) =>
    !c ? "-" : c.state === "unreachable" ? "unreachable" : c.state === "applied" ? `applied ${c.at?.slice(0, 10) ?? ""}`.trim() : c.state === "pending" ? "pending" : c.state.toUpperCase();
  table(["migration", "database", ...report.environments.map((e) => e.name)],
    report.migrations.map((m) => [m.name, m.db, ...report.environments.map((e) => cell(m.cells[e.name]))]));
}

export function maintenance(report: MaintenanceReport): void {
  const holder = (m: MaintenanceReport["after"]) => !m.run ? "" : `, held by run ${m.run}${m.runAlive === false ? ", which is no longer running" : m.runAlive ? " (running)" : ""}`
    + (m.undoFailed ? `; it could not undo itself${m.undoFailed.unreachable.length ? ` (${m.undoFailed.unreachable.join(", ")} unreachable)` : ""}: npm run migration:run finishes the job` : m.runAlive === false ? ": npm run migration:run puts it back" : "");
  const show = (m: MaintenanceReport["after"]) => (m.enabled ? `ON${m.message ? ` ("${m.message}")` : ""}${holder(m)}` : "off");
  if (report.before) console.log(`admindb: maintenance mode ${show(report.before)} -> ${show(report.after)}`);
  else console.log(`admindb: maintenance mode ${show(report.after)} (since ${report.after.updatedAt})`);
}

function backupLine(backup: RunReport["backup"]): void {
  if (!backup) return;
  if ("skipped" in backup) console.log("backup: skipped (--no-backup)");
  else if (backup.manifest.databases.length) {
    const total = backup.manifest.databases.reduce((n, d) => n + d.size, 0);
    console.log(`backup: ${backup.dir} (${backup.manifest.databases.map((d) => d.db).join(", ")}; ${bytes(total)}, verified)`);
  }
}

function failureLines(failure: RunReport["failure"], maintenance: RunReport["maintenance"], warnings: string[] = []): void {
  for (const w of warnings) console.error(`warning: ${w}`);
  if (!failure) return;
  const what = failure.migration ? `migration ${failure.migration} failed: ${failure.message}` : failure.message;
  console.error(`error: ${failure.db}: ${what}`);
  for (const u of failure.undone) console.error(`${u.db}: undone ${u.name} (${u.direction})`);
  if (failure.undoFailed) {
    console.error(`error: ${failure.undoFailed}; the databases are NOT back where they were`);
    if (maintenance === "left-on") console.error(`maintenance mode is left ON, marked undo_failed${failure.unreachable?.length ? ` (${failure.unreachable.join(", ")} unreachable)` : ""}: once every server answers, npm run migration:run finishes the job`);
  }
  if (failure.undoFailed) for (const d of failure.databases ?? []) console.error(`${d.db}: ${outcomeLine(d)}`);
  if (failure.restoreCommand) console.error(`to restore the backup taken before this run: ${failure.restoreCommand}`);
}

function outcomeLine(d: NonNullable<NonNullable<RunReport["failure"]>["databases"]>[number]): string {
  const left = d.leftApplied.length ? `${d.leftApplied.join(", ")} of this run still applied` : "";
  const doubt = d.inDoubt ? `${d.inDoubt} was running when it went away (committed or not: the next run reads it)` : "";
  switch (d.state) {
    case "unchanged": return "unchanged by this run";
    case "undone": return "back where it was (this run's changes undone)";
    case "not-undone": return `NOT back where it was: ${left}`;
    case "unreachable": return `UNREACHABLE: ${[left, doubt].filter(Boolean).join("; ") || "nothing of this run applied"}`;
  }
}

/** A backfill's start, progress (every 10 s), pauses and end, on stderr. */
let lastProgress = 0;
export function backfill(event: BackfillEvent & { db: string }): void {
  // Progress every 10 s at most; starts, pauses and ends always.
  if (event.state === "progress" && Date.now() - lastProgress < 10_000) return;
  if (event.state === "progress" || event.state === "started") lastProgress = Date.now();
  const where = `${event.db}: backfill ${event.table}`;
  const counts = `${event.rowsScanned}/${event.rowsTotal} rows (${event.rowsUpdated} updated), ${event.rowsPerSecond} rows/s`;
  if (event.state === "started") console.error(`${where}: started${event.resumedAfter ? `, resuming after key ${event.resumedAfter} (${event.rowsScanned} rows done before)` : ""}, ~${event.rowsTotal} rows`);
  else if (event.state === "progress") console.error(`${where}: ${counts}${event.etaSeconds !== undefined ? `, ~${event.etaSeconds} s left` : ""}`);
  else if (event.state === "throttled") console.error(`${where}: waiting: ${event.reason}`);
  else if (event.state === "resumed") console.error(`${where}: going on`);
  else console.error(`${where}: done, ${counts}`);
}

function oldColumnLines(d: RunReport["databases"][number]): void {
  for (const u of d.oldColumns ?? []) {
    const when = !u.watched ? "not recorded (nothing watched it: a dropped column has no expand)" : u.lastWrite ? `last written by a client ${u.secondsAgo}s ago (${u.lastWrite})` : "not written by any client since the expand";
    console.log(`${d.db}: ${u.migration}: ${u.table}.${u.column} ${when}`);
  }
}

export function run(report: RunReport): void {
  backupLine(report.backup);
  for (const d of report.databases) {
    oldColumnLines(d);
    for (const h of d.held ?? []) console.log(`${d.db}: ${h} (contract) waits for migration:complete`);
    if (d.createdDatabase) console.log(`${d.db}: created database`);
    if (report.status === "dry-run") {
      console.log(`${d.db}: ${d.pending.length ? `would apply ${d.pending.length}` : "up to date"}`);
      for (const f of d.lint ?? []) console.log(`${d.db}: lint: ${f.file}: ${f.rule}: ${f.message} (a deploy refuses this unless the migration accepts it)`);
      sqlBlock(d.sql);
      continue;
    }
    for (const q of d.squashAdopted ?? []) console.log(`${d.db}: history rewritten to ${q.squash} (it replaces the ${q.replaced} migrations this database had applied; kept in migrations_squashed)`);
    lines(d.applied.map((step) => `${d.db}: applied ${step.name} (${ms(step.durationMs)})`));
    if (report.failure && d.applied.length < d.pending.length && report.failure.db !== d.db) console.log(`${d.db}: not applied (run stopped)`);
    else if (!d.pending.length) console.log(`${d.db}: up to date`);
  }
  if (report.status === "applied" || report.status === "failed") {
    table(["database", "applied", "time", "result"], report.databases.map((d) => {
      const undone = report.failure?.undone.filter((u) => u.db === d.db).length ?? 0;
      const result = report.failure?.db === d.db ? "FAILED" : undone ? "undone" : d.applied.length < d.pending.length ? "not applied" : d.pending.length ? "ok" : "up to date";
      return [d.db, `${d.applied.length}/${d.pending.length}`, ms(d.applied.reduce((n, s) => n + s.durationMs, 0)), result];
    }));
  }
  failureLines(report.failure, report.maintenance, report.warnings);
  pruned(report.pruned);
  if (report.status === "nothing-to-do") console.log(report.command === "complete" ? "no contract migration pending" : "nothing to migrate");
  else if (report.status === "applied") console.log(`run ${report.runId}: done`);
  if (report.maintenance === "kept-on") console.log("maintenance mode is kept ON (--keep-maintenance): npm run db:maintenance -- off once the application is checked");
}

/** 812 B, 8.0 KiB, 21.4 MiB: one unit rule for every size printed. */
function bytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1048576) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1048576).toFixed(1)} MiB`;
}

function table(header: string[], rows: string[][]): void {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  for (const row of [header, ...rows]) console.log(row.map((cell, i) => cell.padEnd(widths[i])).join("  ").trimEnd());
}

export function revert(report: RevertReport): void {
  if (report.undoesRun) console.log(`${report.status === "dry-run" ? "would undo" : "undoing"} run ${report.undoesRun}`);
  backupLine(report.backup);
  for (const d of report.databases) {
    if (report.status === "dry-run") {
      console.log(`${d.db}: ${d.toRevert.length ? `would revert ${d.toRevert.length}` : "nothing to revert"}`);
      sqlBlock(d.sql);
      continue;
    }
    for (const step of d.reverted) console.log(`${d.db}: reverted ${step.name} (${ms(step.durationMs)})`);
  }
  failureLines(report.failure, report.maintenance, report.warnings);
  if (report.status === "nothing-to-do") console.log("nothing to revert");
  else if (report.status === "reverted") console.log(`run ${report.runId}: done`);
}

export function backup(report: BackupReport): void {
  backupLine({ dir: report.dir, manifest: report.manifest });
  for (const d of report.manifest.databases) console.log(`${d.db}: ${d.file} ${bytes(d.size)} sha256 ${d.sha256.slice(0, 12)}... at ${d.applied[d.applied.length - 1] ?? "(no migrations)"}`);
  pruned(report.pruned, report.keep);
}

export function restore(report: RestoreReport): void {
  for (const d of report.databases) {
    console.log(`${d.db}: restored ${report.runId} into ${d.database} (${d.applied.length} migrations applied, verified)`);
    if (d.replaced) console.log(`${d.db}: the previous database is kept as ${d.replaced} (drop it when satisfied)`);
  }
}

const CHECKSUM_NOTE = {
  ok: "",
  changed: "EDITED since applied: checksum differs",
  unverified: "no checksum on record",
  "file-missing": "FILE MISSING",
} as const;

export function show(report: ShowReport): void {
  for (const d of report.databases) {
    if (!d.exists) {
      console.log(`${d.db}: database ${d.database} does not exist yet, ${d.pending.length} pending`);
      continue;
    }
    const latest = d.applied[d.applied.length - 1]?.name ?? "(none)";
    const last = d.lastRun ? `, last run ${d.lastRun.runId} (${d.lastRun.direction}, ${d.lastRun.at} by ${d.lastRun.by})` : "";
    const drift = [d.historyDrift ? "history drift" : "", d.entityDrift ? `entities differ (${d.entityDrift} statements)` : ""].filter(Boolean);
    console.log(`${d.db}: ${d.applied.length} applied, ${d.pending.length} pending, at ${latest}${last}; ${drift.length ? drift.join(", ") + " (see migration:check)" : "no drift"}`);
    lines(d.applied.map((a) => `  [x] ${a.name}${a.checksum === "ok" ? "" : `  (${CHECKSUM_NOTE[a.checksum]})`}`));
    lines(d.pending.map((p) => `  [ ] ${p}${d.contractPending?.includes(p) ? "  (expanded, contract pending: migration:complete)" : ""}`));
  }
}

export function generate(report: GenerateReport, check: boolean): void {
  for (const d of report.databases) {
    if (!d.changed) console.log(`${d.db}: no changes`);
    else if (check) {
      console.log(`${d.db}: entities differ from the database:`);
      for (const q of d.up) console.log(`  ${q};`);
    } else {
      for (const m of d.migrations) {
        const what = m.phase === "expand" ? "expand: migration:run adds the new column, keeps both equal and fills it"
          : m.phase === "contract" ? "contract: waits for migration:complete, after the new version is live"
          : `${plural(m.up.length, "statement")}${m.transaction ? "" : ", transaction = false"}`;
        console.log(`${d.db}: wrote ${m.file} (${what})`);
      }
    }
  }
  // Narrowing type changes, casts to check, dropped columns and tables: read before running.
  for (const w of report.warnings ?? []) console.error(`warning: ${w}`);
}

const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? "" : "s"}`;

export function check(report: CheckReport): void {
  let pending = 0;
  let drift = false;
  for (const d of report.databases) {
    pending += d.pending.length;
    const findings = d.historyDrift.length + d.schemaDrift.length + d.entityDrift.length;
    if (findings) drift = true;
    // Owned by the migrations that created them (an HNSW index, a partial one): listed, never drift.
    for (const line of d.managedByMigrations) console.log(`${d.db}: managed by migrations: ${line}`);
    if (!findings && !d.pending.length) {
      console.log(`${d.db}: ok`);
      continue;
    }
    for (const line of d.historyDrift) console.log(`${d.db}: ${line}`);
    for (const line of d.schemaDrift) console.log(`${d.db}: ${line}`);
    for (const name of d.pending) console.log(`${d.db}: pending ${name}`);
    if (d.entityDrift.length) {
      console.log(d.pending.length
        ? `${d.db}: entities differ from the schema its pending migrations build; after migration:run, migration:generate would write:`
        : `${d.db}: entities differ from the database; migration:generate would write:`);
      for (const q of d.entityDrift) console.log(`  ${q};`);
    }
  }
  if (drift) console.log("drift found");
  else if (!pending) console.log("no drift");
  else if (report.ok) console.log(`no drift (${pending} pending: run npm run migration:run)`);
  else console.log(`no drift, but ${pending} pending (--fail-on-pending): run npm run migration:run`);
}

export function baseline(report: BaselineReport): void {
  for (const d of report.databases) {
    switch (d.status) {
      case "baselined":
        console.log(`${d.db}: schema identical to ${d.migration}: recorded it as applied (no data touched)`);
        break;
      case "has-history":
        console.log(`${d.db}: already has migration history: nothing to do`);
        break;
      case "empty":
        console.log(`${d.db}: no tables: nothing to adopt (migration:run builds it)`);
        break;
      case "refused":
        console.error(`error: ${d.db}: schema differs from ${d.migration}; nothing recorded:`);
        for (const line of d.differences) console.error(`${d.db}: ${line}`);
    }
  }
}

export function repair(report: RepairReport): void {
  for (const d of report.databases) {
    if (!d.accepted.length) console.log(`${d.db}: every applied migration matches its checksum`);
    for (const a of d.accepted) console.log(`${d.db}: accepted the edit of ${a.file} (checksum ${a.checksum.slice(0, 12)}..., recorded in run ${report.runId})`);
  }
}

export function squash(report: SquashReport): void {
  const r = report.replaced;
  console.log(`${report.db}: squashed ${r.length} migrations (${r[0]} ... ${r[r.length - 1]}) into ${report.squash.file} (${report.squash.statements} statements)`);
  console.log(`${report.db}: history rewritten to ${report.squash.name} (the replaced ones are kept in migrations_squashed); their files were removed (version control keeps them)`);
  console.log(`other environments: their next migration:run rewrites their history the same way; one that applied only some of them is refused until it has all`);
}
