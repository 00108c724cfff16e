// What PostgreSQL table locks are called, which is stronger, and which lock a statement takes by its
// kind (the tables of the "Explicit Locking" chapter). A rehearsal samples pg_locks inside a
// migration's transaction; outside one the locks are gone when the statement ends, so there the
// lock is read from the statement itself. Pure functions.
import { tableKey, targetTable } from "../postgres/sql-text";

/** PostgreSQL's table lock modes, weakest first (pg_locks.mode). */
export const LOCK_MODES = [
  "AccessShareLock",
  "RowShareLock",
  "RowExclusiveLock",
  "ShareUpdateExclusiveLock",
  "ShareLock",
  "ShareRowExclusiveLock",
  "ExclusiveLock",
  "AccessExclusiveLock",
] as const;

export type LockMode = (typeof LOCK_MODES)[number];

/** 1 (AccessShareLock) to 8 (AccessExclusiveLock); 0 for anything else. */
export function lockStrength(mode: string): number {
  return (LOCK_MODES as readonly string[]).indexOf(mode) + 1;
}

/** What each mode keeps waiting, in words, for the report. */
export function lockBlocks(mode: string): string {
  switch (mode) {
    case "AccessExclusiveLock":
      return "blocks reads and writes";
    case "ExclusiveLock":
    case "ShareRowExclusiveLock":
    case "ShareLock":
      return "blocks writes";
    case "ShareUpdateExclusiveLock":
      return "blocks other DDL and VACUUM, not reads or writes";
    default:
      return "blocks only DDL";
  }
}

/** The statement's text on one line, at most `max` characters. */
export function oneLine(sql: string, max = 160): string {
  const line = sql.replace(/\s+/g, " ").trim();
  return line.length > max ? `${line.slice(0, max - 3)}...` : line;
}

const IDENT = String.raw`(?:"(?:[^"]|"")+"|[A-Za-z_][\w$]*)`;
const QNAME = String.raw`(${IDENT}(?:\s*\.\s*${IDENT})?)`;

/** The lock `LOCK TABLE ... IN <mode> MODE` asks for. */
function explicitLockMode(statement: string): LockMode {
  const m = /\bIN\s+([A-Z ]+?)\s+MODE\b/i.exec(statement);
  const wanted = (m?.[1] ?? "ACCESS EXCLUSIVE").toLowerCase().replace(/\s+/g, "");
  return LOCK_MODES.find((mode) => mode.toLowerCase() === `${wanted}lock`) ?? "AccessExclusiveLock";
}

/** The subcommands of an ALTER TABLE, cut at the commas outside parentheses and quotes. */
function subcommands(statement: string): string[] {
  const body = statement.replace(new RegExp(String.raw`^ALTER\s+TABLE\s+(?:IF\s+EXISTS\s+)?(?:ONLY\s+)?${QNAME}\s*\*?`, "i"), "");
  const out: string[] = [];
  let depth = 0;
  let quote: string | undefined;
  let start = 0;
  for (let i = 0; i < body.length; i++) {
    const c = body[i];
    if (quote) {
      if (c === quote) quote = undefined;
    } else if (c === "'" || c === '"') quote = c;
    else if (c === "(") depth++;
    else if (c === ")") depth--;
    else if (c === "," && depth === 0) {
      out.push(body.slice(start, i).trim());
      start = i + 1;
    }
  }
  out.push(body.slice(start).trim());
  return out.filter(Boolean);
}

/** One ALTER TABLE subcommand's lock (the table in the PostgreSQL manual's ALTER TABLE page). */
function subcommandLock(sub: string): LockMode {
  if (/^VALIDATE\s+CONSTRAINT\b/i.test(sub)) return "ShareUpdateExclusiveLock";
  if (/^DETACH\s+PARTITION\b.*\bCONCURRENTLY\b/is.test(sub) || /^ATTACH\s+PARTITION\b/i.test(sub)) return "ShareUpdateExclusiveLock";
  if (/^(?:SET\s+WITHOUT\s+CLUSTER|CLUSTER\s+ON)\b/i.test(sub)) return "ShareUpdateExclusiveLock";
  if (/^ALTER\s+(?:COLUMN\s+)?\S+\s+(?:SET\s+STATISTICS|(?:SET|RESET)\s*\()/i.test(sub)) return "ShareUpdateExclusiveLock";
  if (/^(?:SET|RESET)\s*\(/i.test(sub)) return "ShareUpdateExclusiveLock"; // fillfactor, autovacuum and toast settings
  // NOT VALID or not, adding a foreign key takes SHARE ROW EXCLUSIVE (on both tables).
  if (/^ADD\s+(?:CONSTRAINT\s+\S+\s+)?FOREIGN\s+KEY\b/i.test(sub)) return "ShareRowExclusiveLock";
  if (/^(?:ENABLE|DISABLE)\s+(?:ALWAYS\s+|REPLICA\s+)?TRIGGER\b/i.test(sub)) return "ShareRowExclusiveLock";
  return "AccessExclusiveLock";
}

/** An ALTER TABLE takes the strongest lock any of its subcommands needs. */
function alterTableLock(statement: string): LockMode {
  const modes = subcommands(statement).map(subcommandLock);
  return modes.reduce<LockMode>((a, b) => (lockStrength(b) > lockStrength(a) ? b : a), modes[0] ?? "AccessExclusiveLock");
}

/** Statement kinds, first match wins: the lock each takes on its table. */
const KINDS: Array<{ pattern: RegExp; mode: LockMode | ((s: string) => LockMode) }> = [
  { pattern: /^CREATE\s+(?:UNIQUE\s+)?INDEX\s+CONCURRENTLY\b/i, mode: "ShareUpdateExclusiveLock" },
  { pattern: /^DROP\s+INDEX\s+CONCURRENTLY\b/i, mode: "ShareUpdateExclusiveLock" },
  { pattern: /^REINDEX\b.*\bCONCURRENTLY\b/is, mode: "ShareUpdateExclusiveLock" },
  { pattern: /^REINDEX\b/i, mode: "ShareLock" },
  { pattern: /^CREATE\s+(?:UNIQUE\s+)?INDEX\b/i, mode: "ShareLock" },
  { pattern: /^DROP\s+INDEX\b/i, mode: "AccessExclusiveLock" },
  { pattern: /^ALTER\s+TABLE\b/i, mode: alterTableLock },
  { pattern: /^ALTER\s+MATERIALIZED\s+VIEW\b/i, mode: "AccessExclusiveLock" },
  { pattern: /^(?:DROP\s+(?:TABLE|MATERIALIZED\s+VIEW)|TRUNCATE|CLUSTER)\b/i, mode: "AccessExclusiveLock" },
  { pattern: /^VACUUM\s*(?:\([^)]*\bFULL\b[^)]*\)|FULL\b)/i, mode: "AccessExclusiveLock" },
  { pattern: /^(?:VACUUM|ANALYZE|ANALYSE)\b/i, mode: "ShareUpdateExclusiveLock" },
  { pattern: /^LOCK\b/i, mode: explicitLockMode },
  { pattern: /^REFRESH\s+MATERIALIZED\s+VIEW\s+CONCURRENTLY\b/i, mode: "ExclusiveLock" },
  { pattern: /^REFRESH\s+MATERIALIZED\s+VIEW\b/i, mode: "AccessExclusiveLock" },
  { pattern: /^CREATE\s+(?:OR\s+REPLACE\s+)?(?:CONSTRAINT\s+)?TRIGGER\b/i, mode: "ShareRowExclusiveLock" },
  { pattern: /^DROP\s+TRIGGER\b/i, mode: "AccessExclusiveLock" },
  { pattern: /^COMMENT\s+ON\b/i, mode: "ShareUpdateExclusiveLock" },
  { pattern: /^(?:WITH\b.*\b)?(?:UPDATE|DELETE|INSERT|MERGE)\b/is, mode: "RowExclusiveLock" },
  { pattern: /^SELECT\b.*\bFOR\s+(?:NO\s+KEY\s+UPDATE|UPDATE|KEY\s+SHARE|SHARE)\b/is, mode: "RowShareLock" },
  { pattern: /^SELECT\b/i, mode: "AccessShareLock" },
];

/** Where the table is in statements `targetTable` does not cover. */
const MORE_TARGETS = [
  new RegExp(String.raw`^(?:WITH\b.*?\b)?UPDATE\s+(?:ONLY\s+)?${QNAME}`, "is"),
  new RegExp(String.raw`^(?:WITH\b.*?\b)?DELETE\s+FROM\s+(?:ONLY\s+)?${QNAME}`, "is"),
  new RegExp(String.raw`^(?:WITH\b.*?\b)?INSERT\s+INTO\s+${QNAME}`, "is"),
  new RegExp(String.raw`^MERGE\s+INTO\s+(?:ONLY\s+)?${QNAME}`, "i"),
  new RegExp(String.raw`^(?:VACUUM|ANALYZE|ANALYSE)\s+(?:\([^)]*\)\s*)?(?:(?:FULL|FREEZE|VERBOSE|ANALYZE)\s+)*${QNAME}`, "i"),
  new RegExp(String.raw`^CLUSTER\s+(?:VERBOSE\s+)?${QNAME}`, "i"),
  new RegExp(String.raw`^LOCK\s+(?:TABLE\s+)?(?:ONLY\s+)?${QNAME}`, "i"),
  new RegExp(String.raw`^REFRESH\s+MATERIALIZED\s+VIEW\s+(?:CONCURRENTLY\s+)?${QNAME}`, "i"),
  new RegExp(String.raw`^ALTER\s+MATERIALIZED\s+VIEW\s+(?:IF\s+EXISTS\s+)?${QNAME}`, "i"),
  new RegExp(String.raw`^DROP\s+MATERIALIZED\s+VIEW\s+(?:IF\s+EXISTS\s+)?${QNAME}`, "i"),
  new RegExp(String.raw`^REINDEX\s+(?:\([^)]*\)\s*)?TABLE\s+(?:CONCURRENTLY\s+)?${QNAME}`, "i"),
  new RegExp(String.raw`^CREATE\s+(?:OR\s+REPLACE\s+)?(?:CONSTRAINT\s+)?TRIGGER\b.*?\bON\s+${QNAME}`, "is"),
  new RegExp(String.raw`^DROP\s+TRIGGER\s+(?:IF\s+EXISTS\s+)?${IDENT}\s+ON\s+${QNAME}`, "i"),
  new RegExp(String.raw`^SELECT\b.*?\bFROM\s+(?:ONLY\s+)?${QNAME}`, "is"),
];

/** An index a statement acts on by name (its table is found in the catalog). */
const INDEX_TARGETS = [
  new RegExp(String.raw`^DROP\s+INDEX\s+(?:CONCURRENTLY\s+)?(?:IF\s+EXISTS\s+)?${QNAME}`, "i"),
  new RegExp(String.raw`^REINDEX\s+(?:\([^)]*\)\s*)?INDEX\s+(?:CONCURRENTLY\s+)?${QNAME}`, "i"),
  new RegExp(String.raw`^ALTER\s+INDEX\s+(?:IF\s+EXISTS\s+)?${QNAME}`, "i"),
];

/** The relation a statement acts on: `{ table: "public.profiles" }` or `{ index: "public.idx_x" }`, as `tableKey` spells them. */
export function statementTarget(statement: string): { table?: string; index?: string } {
  const s = statement.trim();
  for (const pattern of INDEX_TARGETS) {
    const m = pattern.exec(s);
    if (m) return { index: tableKey(m[1]) };
  }
  const table = targetTable(s);
  if (table) return { table };
  for (const pattern of MORE_TARGETS) {
    const m = pattern.exec(s);
    if (m) return { table: tableKey(m[1]) };
  }
  return {};
}

/**
 * The lock a statement takes on its table by its kind, for statements run outside a transaction,
 * whose locks are released before they could be sampled. Undefined for statements that take no
 * table lock we know of (CREATE TABLE of a new table, SET, CREATE EXTENSION, ...).
 *
 *   inferredLock(`CREATE INDEX CONCURRENTLY "i" ON "profiles" ("x")`) // "ShareUpdateExclusiveLock"
 */
export function inferredLock(statement: string): LockMode | undefined {
  const s = statement.trim();
  for (const kind of KINDS) {
    if (kind.pattern.test(s)) return typeof kind.mode === "function" ? kind.mode(s) : kind.mode;
  }
  return undefined;
}
