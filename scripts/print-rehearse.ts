// Human output of migration:rehearse: per database the copy, then each migration in each phase with
// its statements (time, lock), rewrites and rows; a table of the migrations; failures on stderr.
import type { RehearseReport } from "../src/commands/rehearse";
import type { DbRehearsal, MigrationRehearsal } from "../src/rehearsal/rehearsal";
import { lockBlocks, lockStrength } from "../src/rehearsal/locks";
import type { StatementLock } from "../src/rehearsal/probe";

const ms = (n: number) => (n >= 1000 ? `${(n / 1000).toFixed(1)} s` : `${n < 10 ? n.toFixed(1) : Math.round(n)} ms`);

/** 812 B, 8.0 KiB, 21.4 MiB: the rule print.ts uses. */
function bytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1048576) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1048576).toFixed(1)} MiB`;
}

const PHASE = { up: "up", down: "down", "up-again": "up again" } as const;

function lockText(lock: StatementLock | undefined): string {
  if (!lock) return "";
  return `${lock.mode} on ${[lock.table, ...(lock.alsoOn ?? [])].join(", ")}${lock.inferred ? " (by statement kind)" : ""}`;
}

function strongest(m: MigrationRehearsal | undefined): StatementLock | undefined {
  let best: StatementLock | undefined;
  for (const s of m?.statements ?? []) if (s.lock && (!best || lockStrength(s.lock.mode) > lockStrength(best.mode))) best = s.lock;
  return best;
}

function copyLine(d: DbRehearsal): void {
  if (d.source === "empty") {
    console.log(`${d.db}: database ${d.database} does not exist yet: rehearsing on the empty ${d.scratch}`);
    return;
  }
  if (!d.copyMs) return;
  console.log(`${d.db}: copied ${d.database} (${bytes(d.sizeBytes)}, ${d.source}) into ${d.scratch} in ${ms(d.copyMs)} (estimated ${ms(d.estimateMs)}, ${d.estimateBasis})`);
}

function migrationLines(d: DbRehearsal, m: MigrationRehearsal): void {
  const notes = [m.transaction ? "" : "no transaction", m.lockRetries ? `${m.lockRetries} lock retr${m.lockRetries === 1 ? "y" : "ies"}` : "", m.rewritten.length ? `REWRITES ${m.rewritten.join(", ")}` : ""].filter(Boolean);
  const time = m.error ? "FAILED" : ms(m.durationMs);
  console.log(`${d.db}: ${PHASE[m.phase].padEnd(8)} ${m.name}  ${time}${notes.length ? `  (${notes.join("; ")})` : ""}`);
  for (const s of m.statements) {
    const lock = s.lock ? `  ${lockText(s.lock)}: ${lockBlocks(s.lock.mode)}` : "";
    console.log(`    ${s.sql}  [${ms(s.durationMs)}]${lock}${s.error ? `  ERROR: ${s.error}` : ""}`);
  }
  const rows = Object.entries(m.rows).map(([t, r]) => `${t} ${r.before ?? "?"} -> ${r.after ?? (r.before === null ? "?" : "gone")}`);
  if (rows.length) console.log(`    rows: ${rows.join(", ")}`);
}

function table(header: string[], rows: string[][]): void {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  for (const row of [header, ...rows]) console.log(row.map((cell, i) => cell.padEnd(widths[i])).join("  ").trimEnd());
}

export function rehearse(report: RehearseReport): void {
  for (const r of report.removedLeftovers) console.log(`removed ${r}, left by a rehearsal that is no longer running`);
  for (const s of report.skipped) console.log(`${s.db}: ${s.reason}`);
  for (const d of report.databases) {
    copyLine(d);
    for (const m of d.migrations) migrationLines(d, m);
    if (d.downRestoresSchema === false) for (const line of d.downDifferences) console.log(`${d.db}: after the downs: ${line}`);
    if (d.sameSchemaAfterDownUp === false) for (const line of d.differences) console.log(`${d.db}: after down and up again: ${line}`);
    if (d.sameSchemaAfterDownUp !== null) {
      const down = d.downRestoresSchema ? "the downs restore the copy's schema" : "the downs do NOT restore the copy's schema";
      const again = d.sameSchemaAfterDownUp ? "up again ends at the same schema" : "up again ends at a DIFFERENT schema";
      console.log(`${d.db}: ${down}; ${again}`);
    }
  }
  const rows = report.databases.filter((d) => d.migrations.length).flatMap((d) => d.pending.map((name) => {
    const of = (phase: MigrationRehearsal["phase"]) => d.migrations.find((m) => m.name === name && m.phase === phase);
    const cell = (m: MigrationRehearsal | undefined) => (!m ? "-" : m.error ? "FAILED" : ms(m.durationMs));
    const up = of("up");
    const lock = strongest(up);
    return [d.db, name, cell(up), cell(of("down")), cell(of("up-again")), lock ? lockText(lock) : "-", up?.rewritten.join(", ") || "-"];
  }));
  if (rows.length) table(["database", "migration", "up", "down", "up again", "strongest lock (up)", "rewrites (up)"], rows);
  for (const w of report.warnings) console.error(`warning: ${w}`);
  for (const d of report.databases) {
    if (d.downRestoresSchema === false) console.error(`error: ${d.db}: the downs do not bring the schema back (${d.downDifferences.length} difference${d.downDifferences.length === 1 ? "" : "s"}, listed above): migration:revert would leave it different`);
    if (d.sameSchemaAfterDownUp === false) console.error(`error: ${d.db}: up again ends at a different schema than the first up (${d.differences.length} difference${d.differences.length === 1 ? "" : "s"}, listed above)`);
    const f = d.failure;
    if (!f) continue;
    const what = f.migration ? `migration ${f.migration}${f.phase ? ` (${PHASE[f.phase]})` : ""} failed on the copy: ${f.message}` : `rehearsal failed: ${f.message}`;
    console.error(`error: ${f.db}: ${what}`);
    if (f.statement) console.error(`${f.db}: the statement: ${f.statement}`);
  }
  if (!report.databases.length) {
    console.log("nothing to rehearse");
    return;
  }
  const given = report.databases.some((d) => d.scratchGiven);
  const cleaned = report.databases.some((d) => d.warnings.length) ? "NOT all cleaned up, see the warnings" : given ? "emptied again" : "dropped";
  console.log(`rehearsal ${report.runId}: ${report.ok ? "ok" : "FAILED"} (the real databases were only read; the scratch ${given ? "database" : "databases"} ${cleaned})`);
}
