// What a run or revert will delete, counted before it changes anything: the SQL each migration
// would run is recorded (runner/dry-run), and every DROP COLUMN / DROP TABLE / TRUNCATE in it that
// meets data is counted on the database (safety/data-loss). A revert that drops a column holding
// values says so, with the number, in its text and JSON report (Prisma's destructive-change check).
//
//   await plannedDataLoss(state, files, "down")
//   // ["profiles.note: 1234 values will be dropped"]
import type { MigrationFile } from "../runner/migration-files";
import { captureSql } from "../runner/dry-run";
import { countDataLoss, lossLine } from "../safety/data-loss";
import type { DbState } from "./plan";

/** Drops that would meet data, one line each; empty when nothing holding data is dropped. */
export async function plannedDataLoss(state: DbState, files: MigrationFile[], direction: "up" | "down", recorded?: Map<string, string[]>): Promise<string[]> {
  if (!state.exists || !files.length) return [];
  const statements: string[] = [];
  for (const file of files) {
    // Expand/contract keeps every value in the other column: only a dropped column's contract loses any.
    const evolve = (file.migration as { evolve?: Array<{ kind: string; table: string; column?: string }> }).evolve;
    if (evolve) {
      if (direction === "up" && file.phase === "contract") statements.push(...evolve.flatMap((c) => (c.kind === "drop-column" ? [`ALTER TABLE "${c.table}" DROP COLUMN "${c.column}"`] : [])));
      continue;
    }
    // A migration that reads the database to decide what to do records nothing useful: its drops
    // cannot be counted ahead (the lint reports it as sql-not-captured).
    statements.push(...(recorded?.get(file.name) ?? (await captureSql(state.dataSource, file, direction).catch(() => []))));
  }
  if (!statements.some((s) => /\b(DROP|TRUNCATE)\b/i.test(s))) return [];
  return (await countDataLoss(state.dataSource, statements)).map(lossLine);
}
