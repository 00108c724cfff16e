// Statements that delete data for good: every DROP COLUMN and DROP TABLE left in a generated up is
// announced, so none goes through unread.
//
//   dataLoss([{ query: `ALTER TABLE "profiles" DROP COLUMN "nickname"` }])
//   // [{ subject: "profiles.nickname", problem: "DROP COLUMN deletes the column and its data" }]
import { parseStatement, shownPath, Statement } from "./typeorm-statements";

export interface DataLoss {
  /** `table.column` or `table`. */
  subject: string;
  problem: string;
}

export function dataLoss(up: Statement[]): DataLoss[] {
  const found: DataLoss[] = [];
  for (const s of up) {
    const p = parseStatement(s.query);
    if (p.kind === "drop-column") found.push({ subject: `${shownPath(p.table)}.${p.column}`, problem: "DROP COLUMN deletes the column and its data" });
    else if (p.kind === "drop-table") found.push({ subject: shownPath(p.table), problem: "DROP TABLE deletes the table and its rows" });
    else {
      // Other shapes a hand-completed diff may hold: DROP TABLE IF EXISTS ..., TRUNCATE ...
      const m = /^\s*(DROP TABLE|TRUNCATE)(?: TABLE)?(?: IF EXISTS)? ("[^"]+"(?:\."[^"]+")?|\w+)/i.exec(s.query);
      if (m) found.push({ subject: shownPath(m[2]), problem: `${m[1].toUpperCase()} deletes the table's rows` });
    }
  }
  return found;
}
