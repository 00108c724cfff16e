// A column type change without losing its data. TypeORM writes one as DROP COLUMN + ADD COLUMN
// ("to avoid data conversion"), which empties the column. Here it becomes one
// `ALTER TABLE ... ALTER COLUMN ... TYPE`, with the default and NOT NULL changes TypeORM expressed,
// and the reverse for down. Whether the new type narrows the values (they may not fit, or change)
// is judged from the two type names.
//
//   alterColumnType({ table: '"profiles"', column: "phone", from: { type: "text", notNull: false },
//                     to: { type: "character varying(20)", notNull: false } }, true)
//   // ALTER TABLE "profiles" ALTER COLUMN "phone" TYPE character varying(20)

export interface ColumnDefinition {
  /** The type as TypeORM writes it, e.g. `character varying(20)`, `TIMESTAMP WITH TIME ZONE`, `text array`. */
  type: string;
  notNull: boolean;
  /** The default expression, e.g. `'0'`, `now()`. */
  default?: string;
}

export interface ColumnTypeChange {
  /** The table as TypeORM writes it: `"profiles"` or `"s"."profiles"`. */
  table: string;
  column: string;
  from: ColumnDefinition;
  to: ColumnDefinition;
}

/**
 * The statement that changes the column from `from` to `to` in place. With an automatic
 * (implicit or assignment) cast, no USING: PostgreSQL's assignment cast then refuses a value that
 * does not fit (`value too long for type character varying(20)`), where an explicit
 * `USING "c"::character varying(20)` would cut it off without a word. Without one, `USING "c"::type`
 * converts explicitly (and stops on a value it cannot convert).
 * The default is dropped before and set after the type change: the old default may not convert.
 */
export function alterColumnType(change: { table: string; column: string; from: ColumnDefinition; to: ColumnDefinition }, automaticCast: boolean): string {
  const { table, from, to } = change;
  const c = `"${change.column}"`;
  const steps: string[] = [];
  if (from.default !== undefined) steps.push(`ALTER COLUMN ${c} DROP DEFAULT`);
  if (from.notNull && !to.notNull) steps.push(`ALTER COLUMN ${c} DROP NOT NULL`);
  steps.push(`ALTER COLUMN ${c} TYPE ${to.type}${automaticCast ? "" : ` USING ${c}::${to.type}`}`);
  if (to.default !== undefined) steps.push(`ALTER COLUMN ${c} SET DEFAULT ${to.default}`);
  if (!from.notNull && to.notNull) steps.push(`ALTER COLUMN ${c} SET NOT NULL`);
  return `ALTER TABLE ${table} ${steps.join(", ")}`;
}

interface TypeInfo {
  /** Canonical name: `character varying`, `integer`, `timestamp with time zone`, ... */
  base: string;
  args: number[];
  array: boolean;
}

const ALIASES: Record<string, string> = {
  int: "integer", int4: "integer", int8: "bigint", int2: "smallint", decimal: "numeric",
  float8: "double precision", float: "double precision", float4: "real", varchar: "character varying",
  char: "character", bpchar: "character", bool: "boolean", timestamp: "timestamp without time zone",
  timestamptz: "timestamp with time zone", time: "time without time zone", timetz: "time with time zone",
};

function typeInfo(type: string): TypeInfo {
  let t = type.trim().toLowerCase();
  const array = / array$/.test(t) || /\[\]$/.test(t);
  t = t.replace(/ array$/, "").replace(/(\[\])+$/, "");
  const args = (/\(([\d,\s]+)\)/.exec(t)?.[1] ?? "").split(",").filter((a) => a.trim()).map(Number);
  t = t.replace(/\([\d,\s]+\)/, "").replace(/\s+/g, " ").trim();
  return { base: ALIASES[t] ?? t, args, array };
}

const SHORT: Record<string, string> = {
  "character varying": "varchar", character: "char", "timestamp without time zone": "timestamp",
  "timestamp with time zone": "timestamptz", "time without time zone": "time", "time with time zone": "timetz",
};

/** A type name as people write it: `character varying(20)` -> `varchar(20)`, `text array` -> `text[]`. */
export function shortType(type: string): string {
  const t = typeInfo(type);
  return `${SHORT[t.base] ?? t.base}${t.args.length ? `(${t.args.join(",")})` : ""}${t.array ? "[]" : ""}`;
}

const STRINGS = new Set(["text", "character varying", "character"]);
const INTEGERS: Record<string, { bytes: number; digits: number }> = { smallint: { bytes: 2, digits: 5 }, integer: { bytes: 4, digits: 10 }, bigint: { bytes: 8, digits: 19 } };
const FLOATS: Record<string, number> = { real: 6, "double precision": 15 };
const TIMESTAMPS = new Set(["timestamp without time zone", "timestamp with time zone"]);

/** Characters a string type holds (Infinity for text and unbounded varchar). */
function stringLength(t: TypeInfo): number {
  if (t.base === "text") return Infinity;
  if (t.base === "character") return t.args[0] ?? 1;
  return t.args[0] ?? Infinity;
}

/** Digits before and after the point a numeric holds (unconstrained numeric: unlimited). */
function numericDigits(t: TypeInfo): { integer: number; scale: number } {
  if (t.base === "numeric") {
    if (!t.args.length) return { integer: Infinity, scale: Infinity };
    const scale = t.args[1] ?? 0;
    return { integer: t.args[0] - scale, scale };
  }
  if (INTEGERS[t.base]) return { integer: INTEGERS[t.base].digits, scale: 0 };
  return { integer: Infinity, scale: Infinity }; // real, double precision
}

const isNumber = (t: TypeInfo) => t.base === "numeric" || !!INTEGERS[t.base] || t.base in FLOATS;

export interface Narrowing {
  /** "narrows" (values may not fit or lose precision) or "changes values" (they are reinterpreted). */
  verb: "narrows" | "changes values";
  /** What happens to the values, e.g. "values longer than 20 characters stop the migration". */
  effect: string;
}

/**
 * Whether converting `from` to `to` (both as TypeORM writes them) can fail on or change existing
 * values, by a conservative list: shorter strings, smaller integers, fewer numeric digits, floats,
 * timestamps to dates, time zones, fractional-second precision. Undefined: the values are kept.
 *
 *   narrowing("text", "character varying(20)")
 *   // { verb: "narrows", effect: "values longer than 20 characters stop the migration" }
 */
export function narrowing(fromType: string, toType: string): Narrowing | undefined {
  const from = typeInfo(fromType);
  const to = typeInfo(toType);
  if (from.array !== to.array) return undefined; // no cast of that kind is automatic: the cast check speaks
  const narrows = (effect: string): Narrowing => ({ verb: "narrows", effect: from.array ? `array elements: ${effect}` : effect });
  if (STRINGS.has(to.base) && stringLength(to) < Infinity) {
    if (!STRINGS.has(from.base) || stringLength(from) > stringLength(to)) return narrows(`values longer than ${stringLength(to)} characters stop the migration`);
    return undefined;
  }
  if (INTEGERS[to.base]) {
    if (INTEGERS[from.base] && INTEGERS[from.base].bytes > INTEGERS[to.base].bytes) return narrows(`values out of the ${to.base} range stop the migration`);
    if (from.base === "numeric" || from.base in FLOATS) return narrows(`fractions are rounded and values out of the ${to.base} range stop the migration`);
    return undefined;
  }
  if (to.base === "numeric" && isNumber(from)) {
    const a = numericDigits(from);
    const b = numericDigits(to);
    const effects: string[] = [];
    if (b.scale < a.scale) effects.push(`values are rounded to ${b.scale} decimal places`);
    if (b.integer < a.integer) effects.push(`values with more than ${b.integer} digits before the point stop the migration`);
    return effects.length ? narrows(effects.join(", ")) : undefined;
  }
  if (to.base in FLOATS && isNumber(from)) {
    const kept = FLOATS[to.base];
    const digits = numericDigits(from);
    const fromDigits = from.base in FLOATS ? FLOATS[from.base] : digits.integer + digits.scale;
    if (fromDigits > kept) return narrows(`precision beyond about ${kept} significant digits is lost`);
    return undefined;
  }
  if (to.base === "date" && TIMESTAMPS.has(from.base)) return narrows("the time of day is dropped");
  if (TIMESTAMPS.has(from.base) && TIMESTAMPS.has(to.base) && from.base !== to.base) {
    return { verb: "changes values", effect: to.base === "timestamp with time zone" ? "values are read in the session time zone" : "values are shifted to the session time zone and lose their zone" };
  }
  if ((TIMESTAMPS.has(to.base) || to.base.startsWith("time ")) && from.base === to.base) {
    const precision = (t: TypeInfo) => t.args[0] ?? 6;
    if (precision(to) < precision(from)) return narrows(`fractional seconds are rounded to ${precision(to)} digits`);
  }
  return undefined;
}

/**
 * Whether PostgreSQL converts `from` to `to` by itself (an implicit or assignment cast), by a
 * conservative list, for when the database cannot be asked: the same type with another length or
 * precision, anything to a string type (output conversion), numbers among themselves, timestamps
 * and dates. Anything else: false, so the migration states the cast in a USING.
 */
export function knownAutomaticCast(fromType: string, toType: string): boolean {
  const from = typeInfo(fromType);
  const to = typeInfo(toType);
  if (from.array !== to.array) return false;
  if (from.base === to.base) return true;
  if (STRINGS.has(to.base)) return true;
  if (isNumber(from) && isNumber(to)) return true;
  if (TIMESTAMPS.has(from.base) && (TIMESTAMPS.has(to.base) || to.base === "date")) return true;
  if (from.base === "date" && TIMESTAMPS.has(to.base)) return true;
  return false;
}
