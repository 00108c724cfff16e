// Human output of each command's report: short, one line per database or step.
import type { RunReport } from "../src/commands/run";
import type { RevertReport } from "../src/commands/revert";
import type { ShowReport } from "../src/commands/show";
import type { GenerateReport } from "../src/commands/generate";

const ms = (n: number) => (n >= 1000 ? `${(n / 1000).toFixed(1)} s` : `${Math.round(n)} ms`);

function sqlBlock(sql: Record<string, string[]> | undefined): void {
  for (const [name, statements] of Object.entries(sql ?? {})) {
    console.log(`  -- ${name}`);
    for (const s of statements) console.log(`  ${s.replace(/\s+$/, "")};`);
  }
}

export function run(report: RunReport): void {
  for (const d of report.databases) {
    if (d.createdDatabase) console.log(`${d.db}: created database`);
    if (report.status === "dry-run") {
      console.log(`${d.db}: ${d.pending.length ? `would apply ${d.pending.length}` : "up to date"}`);
      sqlBlock(d.sql);
      continue;
    }
    for (const step of d.applied) console.log(`${d.db}: applied ${step.name} (${ms(step.durationMs)})`);
    if (report.failure && d.applied.length < d.pending.length && report.failure.db !== d.db) console.log(`${d.db}: ${d.applied.length ? "partly applied, then reverted" : "not applied (run stopped)"}`);
    else if (!d.pending.length) console.log(`${d.db}: up to date`);
  }
  if (report.failure) {
    const f = report.failure;
    console.error(`error: ${f.db}: migration ${f.migration} failed: ${f.message}`);
    for (const r of f.reverted) console.error(`${r.db}: reverted ${r.name}`);
    if (f.revertFailed) console.error(`error: ${f.revertFailed}; the databases are not back where they were`);
  } else if (report.status === "nothing-to-do") console.log("nothing to migrate");
  else if (report.status === "applied") console.log(`run ${report.runId}: done`);
}

export function revert(report: RevertReport): void {
  if (report.undoesRun) console.log(`undoing run ${report.undoesRun}`);
  for (const d of report.databases) {
    if (report.status === "dry-run") {
      console.log(`${d.db}: ${d.toRevert.length ? `would revert ${d.toRevert.length}` : "nothing to revert"}`);
      sqlBlock(d.sql);
      continue;
    }
    for (const step of d.reverted) console.log(`${d.db}: reverted ${step.name} (${ms(step.durationMs)})`);
  }
  if (report.failure) console.error(`error: ${report.failure.db}: reverting ${report.failure.migration} failed: ${report.failure.message}`);
  else if (report.status === "nothing-to-do") console.log("nothing to revert");
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
