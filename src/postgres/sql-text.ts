// SQL as text: statements cut at their semicolons (quotes, dollar quotes and comments respected),
// and the table a statement creates or acts on. Pure functions, for the lint and the runner.
export interface Statement {
  /** The statement's text without leading comments. */
  text: string;
  /** Where it is in the linted text: from its first character (comments before it included) to its `;`. */
  start: number;
  end: number;
}

/**
 * Cuts SQL into statements at top-level semicolons, skipping quoted strings and identifiers,
 * dollar quotes and comments.
 */
export function splitStatements(sql: string): Statement[] {
  const out: Statement[] = [];
  let start = 0;
  let i = 0;
  const push = (end: number) => {
    const raw = sql.slice(start, end);
    const text = stripLeadingComments(raw).trim();
    if (text) out.push({ text, start: start + (raw.length - raw.trimStart().length), end });
    start = end + 1;
  };
  while (i < sql.length) {
    const c = sql[i];
    if (c === "-" && sql[i + 1] === "-") {
      const nl = sql.indexOf("\n", i);
      i = nl < 0 ? sql.length : nl + 1;
    } else if (c === "/" && sql[i + 1] === "*") {
      let depth = 1;
      i += 2;
      while (i < sql.length && depth > 0) {
        if (sql[i] === "/" && sql[i + 1] === "*") (depth++, (i += 2));
        else if (sql[i] === "*" && sql[i + 1] === "/") (depth--, (i += 2));
        else i++;
      }
    } else if (c === "'" || c === '"') {
      const escapes = c === "'" && /[eE]/.test(sql[i - 1] ?? "") && !/\w/.test(sql[i - 2] ?? "");
      i++;
      while (i < sql.length) {
        if (escapes && sql[i] === "\\") i += 2;
        else if (sql[i] === c && sql[i + 1] === c) i += 2;
        else if (sql[i] === c) break;
        else i++;
      }
      i++;
    } else if (c === "$" && !/[\w$]/.test(sql[i - 1] ?? "")) {
      const tag = /^\$(?:[A-Za-z_][\w]*)?\$/.exec(sql.slice(i))?.[0];
      if (tag) {
        const close = sql.indexOf(tag, i + tag.length);
        i = close < 0 ? sql.length : close + tag.length;
      } else i++;
    } else if (c === ";") {
      push(i);
      i++;
    } else i++;
  }
  push(sql.length);
  return out;
}

/** Offsets of the starts of the lines of `text`. */
export function lineStarts(text: string): number[] {
  const starts = [0];
  for (let i = text.indexOf("\n"); i >= 0; i = text.indexOf("\n", i + 1)) starts.push(i + 1);
  return starts;
}

/** The offset in `text` of squawk's 0-based line and column (UTF-8 bytes into the line). */
export function offsetOf(text: string, starts: number[], line: number, column: number): number {
  const from = starts[Math.min(line, starts.length - 1)];
  const lineText = text.slice(from, starts[line + 1] ?? text.length);
  return from + Buffer.from(lineText, "utf8").subarray(0, column).toString("utf8").length;
}

/** offset -> 0-based line of `text`. */
export function lineIndex(text: string): (offset: number) => number {
  const starts = lineStarts(text);
  return (offset) => {
    let lo = 0;
    let hi = starts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (starts[mid] <= offset) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  };
}

export function stripLeadingComments(sql: string): string {
  let s = sql;
  for (;;) {
    const t = s.trimStart();
    if (t.startsWith("--")) {
      const nl = t.indexOf("\n");
      s = nl < 0 ? "" : t.slice(nl + 1);
    } else if (t.startsWith("/*")) {
      const end = t.indexOf("*/");
      s = end < 0 ? "" : t.slice(end + 2);
    } else return t;
  }
}

const IDENT = String.raw`(?:"(?:[^"]|"")+"|[A-Za-z_][\w$]*)`;
const QNAME = String.raw`(${IDENT}(?:\s*\.\s*${IDENT})?)`;
const CREATE_TABLE = new RegExp(String.raw`^CREATE\s+(?:(?:GLOBAL|LOCAL)\s+)?(?:(?:TEMPORARY|TEMP|UNLOGGED)\s+)?TABLE\s+(IF\s+NOT\s+EXISTS\s+)?${QNAME}`, "i");
/** Statements that act on an existing table, and where its name is. */
const TABLE_TARGETS = [
  new RegExp(String.raw`^ALTER\s+TABLE\s+(?:IF\s+EXISTS\s+)?(?:ONLY\s+)?${QNAME}`, "i"),
  new RegExp(String.raw`^CREATE\s+(?:UNIQUE\s+)?INDEX\b[^(]*?\bON\s+(?:ONLY\s+)?${QNAME}`, "i"),
  new RegExp(String.raw`^DROP\s+TABLE\s+(?:IF\s+EXISTS\s+)?${QNAME}`, "i"),
  new RegExp(String.raw`^TRUNCATE\s+(?:TABLE\s+)?(?:ONLY\s+)?${QNAME}`, "i"),
  new RegExp(String.raw`^COMMENT\s+ON\s+(?:TABLE|COLUMN)\s+${QNAME}`, "i"),
];

/** `"public"."Profiles"`, `public.profiles`, `profiles` -> `public.Profiles`, `public.profiles`, `public.profiles`. */
export function tableKey(name: string): string {
  const parts = [...name.matchAll(new RegExp(IDENT, "g"))].map(([p]) => (p.startsWith('"') ? p.slice(1, -1).replace(/""/g, '"') : p.toLowerCase()));
  return parts.length > 1 ? `${parts[0]}.${parts[1]}` : `public.${parts[0]}`;
}

/** The table a CREATE TABLE statement creates (not `IF NOT EXISTS`: that table may be an old one). */
export function createdTable(statement: string): string | undefined {
  const m = CREATE_TABLE.exec(statement);
  return m && !m[1] ? tableKey(m[2]) : undefined;
}

/** The existing table an ALTER TABLE, CREATE INDEX, DROP TABLE, TRUNCATE statement acts on. */
export function targetTable(statement: string): string | undefined {
  // `COMMENT ON COLUMN t.c` names a column: the table is all but the last part.
  const column = /^COMMENT\s+ON\s+COLUMN\s+/i.test(statement);
  for (const pattern of TABLE_TARGETS) {
    const m = pattern.exec(statement);
    if (!m) continue;
    if (!column) return tableKey(m[1]);
    const parts = [...statement.replace(/^COMMENT\s+ON\s+COLUMN\s+/i, "").matchAll(new RegExp(`${IDENT}(?=\\s*\\.)`, "g"))].map(([p]) => p);
    return parts.length ? tableKey(parts.join(".")) : undefined;
  }
  return undefined;
}
