// Online-safe rewrites of TypeORM's generated SQL, for tables that already exist (and hold rows):
// TypeORM's up/down query lists in, the statements of up to three migrations out, run in this order:
//   transaction  in one transaction: everything else (new tables, columns, ADD ... NOT VALID)
//   concurrent   `transaction = false`: CREATE / DROP INDEX CONCURRENTLY
//   finish       in one transaction: VALIDATE CONSTRAINT, ADD CONSTRAINT ... UNIQUE USING INDEX
// Only the parts with statements become files. Plain functions, no database: `columnTypeChanges`
// lists the type changes whose casts the caller may check on the live database first (cast-probe.ts).
//
// Each rule, and why:
// - concurrent-index: CREATE INDEX / DROP INDEX on an existing table become CONCURRENTLY, both ways
//   (a plain one blocks every write to the table while it runs). CONCURRENTLY cannot run in a
//   transaction, so they go to the `concurrent` part, after the `transaction` part (which may add
//   the columns they index). Each is written to run again after a failure part way through
//   (squawk's prefer-robust-stmts): `DROP INDEX CONCURRENTLY IF EXISTS` (a failed build leaves an
//   INVALID index behind) before `CREATE INDEX CONCURRENTLY IF NOT EXISTS`. An index on a table
//   created by the same change stays plain, in the transaction: the table is empty.
// - not-valid-constraint: a FOREIGN KEY or CHECK added to an existing table is added NOT VALID in the
//   transaction (new rows are checked at once, no scan under its lock, committed at once), and
//   `VALIDATE CONSTRAINT` scans the old rows later, in the `finish` part: another transaction, as it
//   must be (in the same one, the ADD's lock would be held through the scan), holding only SHARE
//   UPDATE EXCLUSIVE, which lets reads and writes go on.
// - not-null-online: SET NOT NULL on an existing table scans every row under ACCESS EXCLUSIVE.
//   Instead: `ADD CONSTRAINT <t>_<c>_not_null CHECK (c IS NOT NULL) NOT VALID` in the transaction
//   (no scan), then in the finish part `VALIDATE CONSTRAINT` (the scan, under SHARE UPDATE
//   EXCLUSIVE: reads and writes go on), `SET NOT NULL` (PostgreSQL 12+ sees the validated CHECK
//   and skips its scan) and `DROP CONSTRAINT`. squawk accepts SET NOT NULL after a VALIDATE of such
//   a CHECK in the same migration, so nothing needs accepting.
// - unique-using-index: a UNIQUE constraint added to an existing table becomes
//   `CREATE UNIQUE INDEX CONCURRENTLY <name>` (concurrent part), then
//   `ADD CONSTRAINT <name> UNIQUE USING INDEX <name>` (finish, last: its brief ACCESS EXCLUSIVE lock
//   is then held only until the commit).
// - type-in-place: a column type change, which TypeORM writes as DROP COLUMN + ADD (losing the
//   column's data), becomes ALTER COLUMN ... TYPE both ways (column-type-change.ts); the indexes and
//   constraints TypeORM dropped and recreated around it are left alone (ALTER TYPE keeps them).
// Every name TypeORM chose (IDX_..., UQ_..., FK_... or the entity's) is kept, so the diff of the
// entities against the database is empty once the migrations ran.
//
//   planOnlineMigration({ up: [{ query: `CREATE INDEX "idx_a" ON "t"  ("a") ` }], down: [{ query: `DROP INDEX "public"."idx_a"` }] }).concurrent
//   // { up: [{ query: `DROP INDEX CONCURRENTLY IF EXISTS "public"."idx_a"` },
//   //        { query: `CREATE INDEX CONCURRENTLY IF NOT EXISTS "idx_a" ON "t"  ("a") ` }],
//   //   down: [{ query: `DROP INDEX CONCURRENTLY IF EXISTS "public"."idx_a"` }] }
import { alterColumnType, ColumnDefinition, ColumnTypeChange, knownAutomaticCast, narrowing, shortType } from "./column-type-change";
import { dataLoss } from "./data-loss";
import { parseColumnDefinition, parseStatement, Parsed, sameStatement, shownPath, Statement } from "./typeorm-statements";

/** The migrations of one change, in the order they run. */
export const PHASES = ["transaction", "concurrent", "finish"] as const;
export type Phase = (typeof PHASES)[number];

export interface Part {
  up: Statement[];
  /** In the order they run. */
  down: Statement[];
}

export interface OnlinePlan {
  /** Runs first, in a transaction. */
  transaction: Part;
  /** Runs next, `transaction = false`: CREATE / DROP INDEX CONCURRENTLY, each statement on its own. */
  concurrent: Part;
  /** Runs last, in a transaction: VALIDATE CONSTRAINT, ADD CONSTRAINT ... USING INDEX. */
  finish: Part;
  /** What the reader must check before running the migrations, one per column or table. */
  notices: Notice[];
}

export interface Notice {
  /** The migration the notice is about. */
  phase: Phase;
  /** `profiles.phone`, `login_logs`. */
  subject: string;
  /** `text -> varchar(20) narrows (values longer than 20 characters stop the migration)`. */
  problem: string;
  /** What to look at in the file: "the USING" or "" (the file as a whole). */
  look: string;
}

/** Whether PostgreSQL converts a value of type `from` to `to` by itself (implicit or assignment cast). */
export type AutomaticCast = (from: string, to: string) => boolean;

interface Pair {
  up: Statement;
  /** The statement of TypeORM's down that undoes `up`. */
  down: Statement;
  pu: Parsed;
  pd: Parsed;
}

interface Change {
  up: Statement[];
  down: Statement[];
  phase: Phase;
  /** Order within `finish`: validations, then foreign keys that need a new unique index, then USING INDEX. */
  step?: number;
  /** For the ordering rules: what it creates or drops. */
  pair?: Pair;
}

interface FoundTypeChange {
  /** Index of the DROP COLUMN pair and of the ADD pair. */
  drop: number;
  add: number;
  change: ColumnTypeChange;
}

/**
 * TypeORM's up statements with the down statement that undoes each: the schema builder writes
 * them in pairs (its down list, run backwards, undoes the up list). Undefined when the lists differ
 * in length, and the pairing cannot be trusted.
 */
function pairUp(diff: Part): Pair[] | undefined {
  if (diff.up.length !== diff.down.length) return undefined;
  const downs = [...diff.down].reverse();
  return diff.up.map((up, i) => ({ up, down: downs[i], pu: parseStatement(up.query), pd: parseStatement(downs[i].query) }));
}

function findTypeChanges(pairs: Pair[]): FoundTypeChange[] {
  const found: FoundTypeChange[] = [];
  pairs.forEach((drop, i) => {
    const { pu, pd } = drop;
    if (pu.kind !== "drop-column" || pu.ifExists || pd.kind !== "add-column" || pd.table !== pu.table || pd.column !== pu.column) return;
    const j = pairs.findIndex((p, k) => k > i && p.pu.kind === "add-column" && p.pu.table === pu.table && p.pu.column === pu.column);
    if (j < 0) return;
    const add = pairs[j];
    if (add.pu.kind !== "add-column" || add.pd.kind !== "drop-column" || add.pd.table !== pu.table || add.pd.column !== pu.column) return;
    const from = parseColumnDefinition(pd.definition);
    const to = parseColumnDefinition(add.pu.definition);
    if (!from || !to) return; // generated, identity, serial, enum, collation: not a plain type change
    found.push({ drop: i, add: j, change: { table: pu.table, column: pu.column, from, to } });
  });
  return found;
}

/**
 * The column type changes in TypeORM's diff (a DROP COLUMN and an ADD of the same column), for the
 * caller to check which casts PostgreSQL makes by itself before planning.
 */
export function columnTypeChanges(diff: Part): ColumnTypeChange[] {
  const pairs = pairUp(diff);
  return pairs ? findTypeChanges(pairs).map((t) => t.change) : [];
}

const describeCast = (column: string, to: ColumnDefinition) => `USING "${column}"::${to.type}`;

/** The in-place type change of one column, its comments and its notice. */
function typeChangeInPlace(t: ColumnTypeChange, automaticCast: AutomaticCast): { change: Change; notice?: Notice } {
  const back: ColumnTypeChange = { ...t, from: t.to, to: t.from };
  const upAuto = automaticCast(t.from.type, t.to.type);
  const downAuto = automaticCast(t.to.type, t.from.type);
  const shown = `${shortType(t.from.type)} -> ${shortType(t.to.type)}`;
  const comment = (c: ColumnTypeChange, auto: boolean) => {
    const arrow = `${shortType(c.from.type)} -> ${shortType(c.to.type)}`;
    const n = narrowing(c.from.type, c.to.type);
    const lines = [`"${c.column}": ${arrow}, in place (TypeORM's DROP COLUMN + ADD would lose the data).`];
    if (n) lines.push(`It ${n.verb}: ${n.effect}.`);
    if (!auto) lines.push(`No automatic cast: ${describeCast(c.column, c.to)} converts explicitly; a value it cannot convert stops the migration.`);
    else if (n && / characters /.test(n.effect)) lines.push("No USING on purpose: an explicit cast would cut such values off without an error.");
    return lines.join("\n");
  };
  const change: Change = {
    up: [{ query: alterColumnType(t, upAuto), comment: comment(t, upAuto) }],
    down: [{ query: alterColumnType(back, downAuto), comment: comment(back, downAuto) }],
    phase: "transaction",
  };
  const n = narrowing(t.from.type, t.to.type);
  if (!n && upAuto) return { change };
  const problems = [n ? `${n.verb} (${n.effect})` : "", upAuto ? "" : `has no automatic cast (${describeCast(t.column, t.to)})`].filter(Boolean).join(" and ");
  return { change, notice: { phase: "transaction", subject: `${shownPath(t.table)}.${t.column}`, problem: `${shown} ${problems}`, look: upAuto ? "" : "the USING" } };
}

/** Whether an index definition (`USING gin ("tags") WHERE ...`) names one of these columns. */
function mentionsColumn(rest: string, columns: Set<string> | undefined): boolean {
  return [...(columns ?? [])].some((c) => rest.includes(`"${c}"`));
}

/** The CHECK (col IS NOT NULL) that lets SET NOT NULL skip its scan: `<table>_<column>_not_null`, at most 63 bytes. */
function notNullCheckName(table: string, column: string): string {
  return `${shownPath(table).split(".").pop()}_${column}_not_null`.slice(0, 63);
}

/** `DROP INDEX CONCURRENTLY IF EXISTS <path>`: runs again without error. */
function dropConcurrently(path: string): Statement {
  return { query: `DROP INDEX CONCURRENTLY IF EXISTS ${path}` };
}

/**
 * TypeORM's `CREATE [UNIQUE] INDEX "x" ON ...` built concurrently, so that it can run again after a
 * failure: an INVALID index a failed build left behind is dropped first, then IF NOT EXISTS.
 */
function buildConcurrently(create: string, path: string): Statement[] {
  return [dropConcurrently(path), { query: create.replace(/^CREATE (UNIQUE )?INDEX (?:CONCURRENTLY )?/, "CREATE $1INDEX CONCURRENTLY IF NOT EXISTS ") }];
}

function columnsOf(list: string): string {
  return list.split(",").map((c) => c.trim()).join(",");
}

/**
 * Plans the statements of TypeORM's diff as up to three migrations (see the rules above).
 * `automaticCast` says which column type conversions PostgreSQL makes by itself; by default a
 * conservative list (column-type-change.ts `knownAutomaticCast`).
 */
export function planOnlineMigration(diff: Part, automaticCast: AutomaticCast = knownAutomaticCast): OnlinePlan {
  const pairs = pairUp(diff);
  if (!pairs) {
    // Nothing is moved or rewritten: the file is what TypeORM generated.
    const notices: Notice[] = [
      { phase: "transaction", subject: "up/down", problem: "TypeORM's up and down do not pair up, so the migration is written as TypeORM generated it, without online-safe rewrites", look: "" },
      ...dataLoss(diff.up).map((d) => ({ phase: "transaction" as const, ...d, look: "" })),
    ];
    return { transaction: { up: diff.up, down: diff.down }, concurrent: { up: [], down: [] }, finish: { up: [], down: [] }, notices };
  }
  const notices: Notice[] = [];
  const changes: Array<Change | undefined> = pairs.map((pair) => ({ up: [pair.up], down: [pair.down], phase: "transaction", pair }));
  const untouched = (i: number) => changes[i]?.pair !== undefined;

  // type-in-place: the ADD takes the place of both; the DROP COLUMN goes.
  const retyped = new Set<string>();
  for (const t of findTypeChanges(pairs)) {
    const { change, notice } = typeChangeInPlace(t.change, automaticCast);
    changes[t.drop] = undefined;
    changes[t.add] = change;
    if (notice) notices.push(notice);
    retyped.add(t.change.table);
  }
  // TypeORM dropped the retyped columns' indexes and constraints and creates them again, unchanged:
  // ALTER TYPE keeps (and rebuilds) them, so both go.
  if (retyped.size) {
    pairs.forEach((drop, i) => {
      if (!untouched(i) || !["drop-index", "drop-constraint"].includes(drop.pu.kind)) return;
      const j = pairs.findIndex((create, k) => k > i && untouched(k) && sameStatement(create.up.query, drop.down.query) && sameStatement(create.down.query, drop.up.query));
      if (j >= 0 && [...retyped].some((table) => pairs[j].up.query.includes(table))) {
        changes[i] = undefined;
        changes[j] = undefined;
      }
    });
  }

  const created = new Set(pairs.flatMap((p) => (p.pu.kind === "create-table" || p.pu.kind === "create-view" ? [p.pu.table] : [])));
  const dropped = new Set<string>();
  const droppedColumns = new Map<string, Set<string>>();
  changes.forEach((c, i) => {
    const p = c?.pair ? pairs[i].pu : undefined;
    if (p?.kind === "drop-table") dropped.add(p.table);
    if (p?.kind === "drop-column") droppedColumns.set(p.table, (droppedColumns.get(p.table) ?? new Set()).add(p.column));
  });

  // unique-using-index applies to a UNIQUE added to an existing table in TypeORM's plain form.
  const usingIndex = (pair: Pair) => {
    const { pu, pd } = pair;
    if (pu.kind !== "add-constraint" || pu.type !== "UNIQUE" || created.has(pu.table) || pd.kind !== "drop-constraint" || pd.name !== pu.name) return undefined;
    const m = /^\(([^)]*)\)((?: DEFERRABLE [A-Z ]+)?)$/.exec(pu.rest.trim());
    return m ? { table: pu.table, name: pu.name, columns: m[1], deferrable: m[2] } : undefined;
  };
  // `table(columns)` a concurrent unique index will cover: a foreign key referencing them must wait for it.
  const onlineUniques = new Set(changes.flatMap((c) => {
    const u = c?.pair && usingIndex(c.pair);
    return u ? [`${u.table}(${columnsOf(u.columns)})`] : [];
  }));

  const out: Change[] = [];
  for (const c of changes) {
    if (!c) continue;
    const pair = c.pair;
    if (!pair) {
      out.push(c);
      continue;
    }
    const { pu, pd } = pair;
    // concurrent-index: create
    if (pu.kind === "create-index" && !pu.concurrently && !created.has(pu.table) && pd.kind === "drop-index" && pd.name === pu.name && !pd.concurrently) {
      out.push({ up: buildConcurrently(pair.up.query, pd.path), down: [dropConcurrently(pd.path)], phase: "concurrent", pair });
      continue;
    }
    // concurrent-index: drop (plain when its table or one of its columns goes in the same change:
    // that takes the exclusive lock anyway, and must find the index gone, or take it along)
    if (pu.kind === "drop-index" && !pu.concurrently && pd.kind === "create-index" && pd.name === pu.name && !pd.concurrently
        && !created.has(pd.table) && !dropped.has(pd.table) && !mentionsColumn(pd.rest, droppedColumns.get(pd.table))) {
      out.push({ up: [dropConcurrently(pu.path)], down: buildConcurrently(pair.down.query, pu.path), phase: "concurrent", pair });
      continue;
    }
    // not-valid-constraint
    if (pu.kind === "add-constraint" && (pu.type === "FOREIGN KEY" || pu.type === "CHECK") && !pu.notValid && !created.has(pu.table)
        && pd.kind === "drop-constraint" && pd.name === pu.name && pd.table === pu.table) {
      const references = pu.type === "FOREIGN KEY" ? /REFERENCES ("[^"]+"(?:\."[^"]+")?)\(([^)]*)\)/.exec(pu.rest) : null;
      // A foreign key needs a unique index on the columns it references: one built concurrently
      // exists only from the finish part on.
      const late = !!references && onlineUniques.has(`${references[1]}(${columnsOf(references[2])})`);
      out.push({ up: [{ query: `${pair.up.query} NOT VALID` }], down: [pair.down], phase: late ? "finish" : "transaction", step: 1, pair });
      out.push({ up: [{ query: `ALTER TABLE ${pu.table} VALIDATE CONSTRAINT "${pu.name}"` }], down: [], phase: "finish", step: late ? 1 : 0 });
      continue;
    }
    // not-null-online
    if (pu.kind === "set-not-null" && !created.has(pu.table)) {
      const check = notNullCheckName(pu.table, pu.column);
      out.push({
        up: [{ query: `ALTER TABLE ${pu.table} ADD CONSTRAINT "${check}" CHECK ("${pu.column}" IS NOT NULL) NOT VALID` }],
        down: [{ query: `ALTER TABLE ${pu.table} DROP CONSTRAINT IF EXISTS "${check}"` }],
        phase: "transaction",
      });
      out.push({
        up: [{ query: `ALTER TABLE ${pu.table} VALIDATE CONSTRAINT "${check}"` }, pair.up, { query: `ALTER TABLE ${pu.table} DROP CONSTRAINT "${check}"` }],
        down: [pair.down],
        phase: "finish", step: 3,
      });
      continue;
    }
    // unique-using-index
    const unique = usingIndex(pair);
    if (unique) {
      const index = unique.table.includes(".") ? `${unique.table.split(".")[0]}."${unique.name}"` : `"${unique.name}"`;
      out.push({ up: buildConcurrently(`CREATE UNIQUE INDEX CONCURRENTLY "${unique.name}" ON ${unique.table} (${unique.columns})`, index), down: [dropConcurrently(index)], phase: "concurrent", pair });
      out.push({
        up: [{ query: `ALTER TABLE ${unique.table} ADD CONSTRAINT "${unique.name}" UNIQUE USING INDEX "${unique.name}"${unique.deferrable}` }],
        down: [pair.down], // drops the index too: the concurrent part's down then finds it gone (IF EXISTS)
        phase: "finish", step: 2,
      });
      continue;
    }
    out.push(c);
  }

  // An index name is unique in its schema: an index the transaction creates under the name of one
  // the concurrent part would drop later must find it gone, so that drop stays plain, in the transaction.
  const createdInTransaction = new Set(out.flatMap((c) => (c.phase === "transaction" && c.pair?.pu.kind === "create-index" ? [c.pair.pu.name] : [])));
  for (const c of out) {
    if (c.phase === "concurrent" && c.pair?.pu.kind === "drop-index" && createdInTransaction.has(c.pair.pu.name)) {
      Object.assign(c, { up: [c.pair.up], down: [c.pair.down], phase: "transaction" });
    }
  }

  const part = (list: Change[]): Part => ({ up: list.flatMap((c) => c.up), down: [...list].reverse().flatMap((c) => c.down) });
  const inPhase = (phase: Phase) => out.filter((c) => c.phase === phase);
  const plan: OnlinePlan = {
    transaction: part(inPhase("transaction")),
    concurrent: part(inPhase("concurrent")),
    finish: part([0, 1, 2, 3].flatMap((step) => inPhase("finish").filter((c) => c.step === step))),
    notices,
  };
  for (const phase of PHASES) {
    for (const d of dataLoss(plan[phase].up)) notices.push({ phase, ...d, look: "" });
  }
  return plan;
}
