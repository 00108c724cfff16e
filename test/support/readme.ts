// Reading the guides (README.md, README.ja.md) the way a test compares them with the code: tables
// as rows of cells, backticked names.
import * as fs from "fs";
import * as path from "path";

export const ROOT = path.resolve(__dirname, "..", "..");
export const README = fs.readFileSync(path.join(ROOT, "README.md"), "utf8");
export const README_JA = fs.readFileSync(path.join(ROOT, "README.ja.md"), "utf8");

/** Splits one markdown table row into its cells (a `\|` inside a cell is not a separator). */
function cells(line: string): string[] {
  return line.trim().replace(/^\||\|$/g, "").split(/(?<!\\)\|/).map((c) => c.trim());
}

/** The body rows of the table whose header row starts with `header` (cells; throws when there is none). */
export function tableRows(text: string, ...header: string[]): string[][] {
  const lines = text.split("\n");
  const start = lines.findIndex((l) => l.startsWith("|") && header.every((h, i) => cells(l)[i] === h));
  if (start < 0) throw new Error(`no table headed "${header.join(" | ")}"`);
  const rows: string[][] = [];
  for (const line of lines.slice(start + 2)) {
    if (!line.startsWith("|")) break;
    rows.push(cells(line));
  }
  return rows;
}

/** Every `backticked` piece of a text, in order. */
export function backticked(text: string): string[] {
  return [...text.matchAll(/`([^`]+)`/g)].map((m) => m[1]);
}
