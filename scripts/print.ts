// Human output of each command's report: short, one line per database or step.
import type { RunReport } from "../src/commands/run";
import type { RevertReport } from "../src/commands/revert";
import type { ShowReport } from "../src/commands/show";
import type { GenerateReport } from "../src/commands/generate";
import type { BackupReport } from "../src/commands/backup";
import type { RestoreReport } from "../src/restore";

const ms = (n: number) => (n >= 1000 ? `${(n / 1000).toFixed(1)} s` : `${Math.round(n)} ms`);

function sqlBlock(sql: Record<string, string[]> | undefined): void {
  for (const [name, statements] of Object.entries(sql ?? {})) {
    console.log(`  -- ${name}`);
    for (const s of statements) console.log(`  ${s.replace(/\s+$/, "")};`);
  }
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

function backupLine(backup: RunReport["backup"]): void {
  if (!backup) return;
  if ("skipped" in backup) console.log("backup: skipped (--no-backup)");
  else if (backup.manifest.databases.length) {
    const total = backup.manifest.databases.reduce((n, d) => n + d.size, 0);
    console.log(`backup: ${backup.dir} (${backup.manifest.databases.map((d) => d.db).join(", ")}; ${(total / 1048576).toFixed(1)} MiB, verified)`);
  }
}

function failureLines(failure: RunReport["failure"], maintenance: RunReport["maintenance"]): void {
  if (!failure) return;
  const what = failure.migration ? `migration ${failure.migration} failed: ${failure.message}` : failure.message;
  console.error(`error: ${failure.db}: ${what}`);
  for (const u of failure.undone) console.error(`${u.db}: undone ${u.name} (${u.direction})`);
  if (failure.undoFailed) {
    console.error(`error: ${failure.undoFailed}; the databases are NOT back where they were`);
    if (maintenance === "left-on") console.error("maintenance mode is left ON");
  }
  if (failure.restoreCommand) console.error(`to restore the backup taken before this run: ${failure.restoreCommand}`);
}

export function run(report: RunReport): void {
  backupLine(report.backup);
  for (const d of report.databases) {
    if (d.createdDatabase) console.log(`${d.db}: created database`);
    if (report.status === "dry-run") {
      console.log(`${d.db}: ${d.pending.length ? `would apply ${d.pending.length}` : "up to date"}`);
      sqlBlock(d.sql);
      continue;
    }
    for (const step of d.applied) console.log(`${d.db}: applied ${step.name} (${ms(step.durationMs)})`);
    if (report.failure && d.applied.length < d.pending.length && report.failure.db !== d.db) console.log(`${d.db}: not applied (run stopped)`);
    else if (!d.pending.length) console.log(`${d.db}: up to date`);
  }
  failureLines(report.failure, report.maintenance);
  if (report.status === "nothing-to-do") console.log("nothing to migrate");
  else if (report.status === "applied") console.log(`run ${report.runId}: done`);
}

export function revert(report: RevertReport): void {
  if (report.undoesRun) console.log(`undoing run ${report.undoesRun}`);
  backupLine(report.backup);
  for (const d of report.databases) {
    if (report.status === "dry-run") {
      console.log(`${d.db}: ${d.toRevert.length ? `would revert ${d.toRevert.length}` : "nothing to revert"}`);
      sqlBlock(d.sql);
      continue;
    }
    for (const step of d.reverted) console.log(`${d.db}: reverted ${step.name} (${ms(step.durationMs)})`);
  }
  failureLines(report.failure, report.maintenance);
  if (report.status === "nothing-to-do") console.log("nothing to revert");
  else if (report.status === "reverted") console.log(`run ${report.runId}: done`);
}

export function backup(report: BackupReport): void {
  backupLine({ dir: report.dir, manifest: report.manifest });
  for (const d of report.manifest.databases) console.log(`${d.db}: ${d.file} ${(d.size / 1024).toFixed(0)} KiB sha256 ${d.sha256.slice(0, 12)}... at ${d.applied[d.applied.length - 1] ?? "(no migrations)"}`);
  for (const p of report.pruned) console.log(`removed old backup ${p}`);
}

export function restore(report: RestoreReport): void {
  for (const d of report.databases) {
    console.log(`${d.db}: restored ${report.runId} into ${d.database} (${d.applied.length} migrations applied, verified)`);
    if (d.replaced) console.log(`${d.db}: the previous database is kept as ${d.replaced} (drop it when satisfied)`);
  }
}

export function show(report: ShowReport): void {
  for (const d of report.databases) {
    if (!d.exists) {
      console.log(`${d.db}: database ${d.database} does not exist yet, ${d.pending.length} pending`);
      continue;
    }
    const latest = d.applied[d.applied.length - 1]?.name ?? "(none)";
    const last = d.lastRun ? `, last run ${d.lastRun.runId} (${d.lastRun.direction}, ${d.lastRun.at} by ${d.lastRun.by})` : "";
    console.log(`${d.db}: ${d.applied.length} applied, ${d.pending.length} pending, at ${latest}${last}`);
    for (const a of d.applied) console.log(`  [x] ${a.name}${a.file ? "" : "  (file missing)"}`);
    for (const p of d.pending) console.log(`  [ ] ${p}`);
  }
}

export function generate(report: GenerateReport, check: boolean): void {
  for (const d of report.databases) {
    if (!d.changed) console.log(`${d.db}: no changes`);
    else if (check) {
      console.log(`${d.db}: entities differ from the database:`);
      for (const q of d.up) console.log(`  ${q};`);
    } else console.log(`${d.db}: wrote ${d.file} (${d.up.length} statements)`);
  }
}
