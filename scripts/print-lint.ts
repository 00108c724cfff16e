// Human output of migration:lint: one line per finding, per accepted finding, per squawk-ignore
// comment in the SQL, then one summary line.
import type { LintReport } from "../src/commands/lint";

const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? "" : "s"}`;

/** The lines `lint` prints, for tests and for the printer. */
export function lintLines(report: LintReport): string[] {
  const lines: string[] = [];
  for (const d of report.databases) {
    for (const f of d.findings) lines.push(`${d.db}: ${f.file}: ${f.rule}: ${f.message}${f.statement ? ` [${f.statement}]` : ""}`);
    for (const f of d.accepted) lines.push(`${d.db}: ${f.file}: ${f.rule}: accepted (${f.reason})${f.statement ? ` [${f.statement}]` : ""}`);
    for (const c of d.ignoreComments) {
      const rules = c.rules.length ? c.rules.join(", ") : "every rule";
      lines.push(`${d.db}: ${c.file}: squawk-ignore${c.scope === "file" ? "-file" : ""} comment in its SQL (line ${c.line}) skips ${rules}${c.reason ? ` (${c.reason})` : ""}`);
    }
  }
  const linted = report.databases.reduce((n, d) => n + d.migrations.length, 0);
  const findings = report.databases.reduce((n, d) => n + d.findings.length, 0);
  const accepted = report.databases.reduce((n, d) => n + d.accepted.length, 0);
  const what = report.scope === "all" ? "migration" : "pending migration";
  const per = report.databases.map((d) => `${d.db} ${d.migrations.length}`).join(", ");
  if (!linted) lines.push(`lint: no ${what}s to lint (${report.scope === "pending" ? "--all lints every migration" : "no migration files"})`);
  else {
    const outcome = findings ? `${plural(findings, "finding")} not accepted` : "no findings";
    lines.push(`lint: ${outcome} in ${plural(linted, what)} (${per})${accepted ? `, ${accepted} accepted` : ""}; squawk ${report.squawkVersion}`);
  }
  return lines;
}

export function lint(report: LintReport): void {
  for (const line of lintLines(report)) console.log(line);
}
