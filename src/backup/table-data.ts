// The data of a database's big tables, beside its `pg_dump -Fc` archive: binary COPY files
// (`COPY ... TO STDOUT (FORMAT binary)`), taken from the archive's own snapshot. A vector's text
// form (float formatting) is most of what pg_dump spends on vector data, and its binary form is
// 2.5 times smaller; the text of other big tables is cheaper in binary too. A table of 64 MiB or
// more is split into two files by ctid range, read by two server backends at once.
//
// Each file is checked as it is written (the PGCOPY header, every tuple's field count and field
// lengths, the trailer, nothing after it) and checksummed; its manifest entry says which table and
// columns it holds, its sha256, size and row count. A restore checks a file the same way from disk,
// and COPY FROM must load exactly the rows of the manifest.
import { spawn } from "child_process";
import * as crypto from "crypto";
import * as fs from "fs";
import * as path from "path";
import type { Client } from "pg";
import type { DbTarget } from "../config";
import type { DbName } from "../databases";
import { MigrationError } from "../errors";
import { quoteIdent, settleAll } from "../postgres/sql";
import { firstError, pgEnv } from "../postgres/client-programs";

/** Tables of this size (data and TOAST) or more go into binary COPY files. */
export const BINARY_TABLE_BYTES = 8 * 1048576;
/** Tables of this size or more are read in two ctid ranges at once (PostgreSQL 14+: TID range scans). */
export const SPLIT_TABLE_BYTES = 64 * 1048576;

/** One binary COPY file of a backup: a table, or one ctid range of it. */
export interface DataFile {
  schema: string;
  table: string;
  /** The columns in the file, in order (generated columns are left out: they are computed again). */
  columns: string[];
  file: string;
  format: "binary";
  sha256: string;
  size: number;
  rows: number;
}

/** A table (or range of one) to copy out, under the snapshot of the archive. */
export interface DataTask {
  schema: string;
  table: string;
  columns: string[];
  /** The ctid range: [fromPage, toPage), toPage undefined for the end of the table. */
  fromPage?: number;
  toPage?: number;
}

const qualified = (t: { schema: string; table: string }) => `${quoteIdent(t.schema)}.${quoteIdent(t.table)}`;

/** The table for pg_dump's --exclude-table-data: a pattern quoted so it matches only this table. */
export function excludePattern(t: { schema: string; table: string }): string {
  return `--exclude-table-data=${qualified(t)}`;
}

/**
 * The big tables of the database `client` reads (in the transaction whose snapshot the backup
 * uses), as copy tasks, biggest first. Only tables whose every column has a binary form that does
 * not name type OIDs (which differ from database to database): built-in types, enums, ranges,
 * extension base types such as vector, domains over them, arrays of built-in types. Others stay in
 * the archive. Not before PostgreSQL 12 (generated columns).
 */
export async function bigTables(client: Client, serverMajor: number): Promise<DataTask[]> {
  if (serverMajor < 12) return [];
  const { rows } = await client.query<{ schema: string; table: string; bytes: string; pages: string; columns: string[] }>(`
    SELECT n.nspname AS schema, c.relname AS table, pg_table_size(c.oid) AS bytes,
           pg_relation_size(c.oid) / current_setting('block_size')::int AS pages,
           array_agg(a.attname::text ORDER BY a.attnum) AS columns
      FROM pg_class c
      JOIN pg_namespace n ON n.oid = c.relnamespace
      JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
      JOIN pg_type t ON t.oid = a.atttypid
      JOIN pg_type b ON b.oid = CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END
      LEFT JOIN pg_type e ON e.oid = b.typelem AND b.typlen = -1
     WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'
       AND pg_table_size(c.oid) >= $1
       AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
     GROUP BY n.nspname, c.relname, c.oid
    HAVING bool_and(b.typtype IN ('b', 'e', 'r') AND b.typsend <> 0 AND b.typreceive <> 0
                    AND (e.oid IS NULL OR (e.oid < 16384 AND e.typtype = 'b')))
     ORDER BY 3 DESC, 1, 2`, [BINARY_TABLE_BYTES]);
  return rows.flatMap((r) => {
    const base = { schema: r.schema, table: r.table, columns: r.columns };
    const pages = Number(r.pages);
    if (serverMajor < 14 || Number(r.bytes) < SPLIT_TABLE_BYTES || pages < 2) return [base];
    // The last range is open: rows are never visible to the snapshot beyond the size read in it.
    const middle = Math.floor(pages / 2);
    return [{ ...base, toPage: middle }, { ...base, fromPage: middle }];
  });
}

/** The COPY that reads one task, binary, to stdout. */
function copyOutSql(task: DataTask): string {
  const columns = task.columns.map(quoteIdent).join(", ");
  if (task.fromPage === undefined && task.toPage === undefined) return `COPY ${qualified(task)} (${columns}) TO STDOUT (FORMAT binary)`;
  const where = [
    task.fromPage !== undefined ? `ctid >= '(${task.fromPage},0)'::tid` : "",
    task.toPage !== undefined ? `ctid < '(${task.toPage},0)'::tid` : "",
  ].filter(Boolean).join(" AND ");
  return `COPY (SELECT ${columns} FROM ONLY ${qualified(task)} WHERE ${where}) TO STDOUT (FORMAT binary)`;
}

/**
 * Checks a binary COPY stream as it goes by: the signature, flags without OIDs, the header
 * extension, every tuple's field count (the file's columns) and field lengths, the trailer, and
 * nothing after it. `end()` returns the number of rows or throws what is wrong.
 */
export class PgCopyChecker {
  private static readonly SIGNATURE = Buffer.from("PGCOPY\n\xff\r\n\0", "latin1");
  private pending = Buffer.alloc(0);
  private state: "header" | "extension" | "tuple" | "field" | "skip" | "done" = "header";
  private need = 19;
  private skip = 0;
  private fieldsLeft = 0;
  rows = 0;
  private offset = 0;

  constructor(private readonly columns: number) {}

  push(chunk: Buffer): void {
    let at = 0;
    while (at < chunk.length) {
      if (this.state === "done") throw new Error(`${chunk.length - at} bytes after the trailer`);
      if (this.state === "skip") {
        const n = Math.min(this.skip, chunk.length - at);
        this.skip -= n;
        at += n;
        this.offset += n;
        if (this.skip === 0) this.state = this.fieldsLeft ? "field" : "tuple";
        continue;
      }
      // A fixed-size piece (header, field count, field length), perhaps split between chunks.
      let piece: Buffer;
      if (!this.pending.length && chunk.length - at >= this.need) {
        piece = chunk.subarray(at, at + this.need);
        at += this.need;
      } else {
        const n = Math.min(this.need - this.pending.length, chunk.length - at);
        this.pending = Buffer.concat([this.pending, chunk.subarray(at, at + n)]);
        at += n;
        if (this.pending.length < this.need) return;
        piece = this.pending;
        this.pending = Buffer.alloc(0);
      }
      this.offset += piece.length;
      this.take(piece);
    }
  }

  private take(piece: Buffer): void {
    switch (this.state) {
      case "header": {
        if (!piece.subarray(0, 11).equals(PgCopyChecker.SIGNATURE)) throw new Error("no PGCOPY signature");
        if (piece.readUInt32BE(11) & 0x0001ffff) throw new Error("unexpected header flags");
        const extension = piece.readUInt32BE(15);
        if (extension > 1 << 20) throw new Error("header extension too long");
        this.skip = extension;
        this.fieldsLeft = 0;
        this.state = extension ? "skip" : "tuple";
        this.need = 2;
        return;
      }
      case "tuple": {
        const fields = piece.readInt16BE(0);
        if (fields === -1) {
          this.state = "done";
          return;
        }
        if (fields !== this.columns) throw new Error(`tuple ${this.rows + 1} has ${fields} fields, not ${this.columns} (at byte ${this.offset - 2})`);
        this.rows++;
        this.fieldsLeft = fields;
        this.state = fields ? "field" : "tuple";
        this.need = fields ? 4 : 2;
        return;
      }
      case "field": {
        const length = piece.readInt32BE(0);
        if (length < -1) throw new Error(`tuple ${this.rows} has a field of length ${length} (at byte ${this.offset - 4})`);
        this.fieldsLeft--;
        if (length > 0) {
          this.skip = length;
          this.state = "skip";
        } else {
          this.state = this.fieldsLeft ? "field" : "tuple";
        }
        this.need = this.fieldsLeft ? 4 : 2;
        return;
      }
    }
  }

  /** The rows, once the stream is whole. */
  end(): number {
    if (this.state !== "done") throw new Error(this.state === "header" ? "no PGCOPY header (empty or cut short)" : `cut short after ${this.rows} rows (no trailer)`);
    return this.rows;
  }
}

/** Runs psql with the COPY statements of `commands`, the connection in its environment. */
function runPsql(psql: string, commands: string[], env: NodeJS.ProcessEnv, stdio: { stdin?: number; stdout?: number | "pipe" }, signal?: AbortSignal) {
  const args = ["-X", "-q", "--no-password", "-v", "ON_ERROR_STOP=1", ...commands.flatMap((c) => ["-c", c])];
  return spawn(psql, args, { env, stdio: [stdio.stdin ?? "ignore", stdio.stdout ?? "pipe", "pipe"], ...(signal ? { signal, killSignal: "SIGTERM" as const } : {}) });
}

/**
 * Copies one task out into `file` (created 0600), under the exported `snapshot`, checking and
 * checksumming the stream as it is written. Returns the file's manifest entry; rejects with
 * the server's error (the caller retries a lost connection).
 */
export async function copyOut(psql: string, target: DbTarget, task: DataTask, snapshot: string, file: string, application: string, signal?: AbortSignal): Promise<DataFile> {
  if (!/^[0-9A-Fa-f-]+$/.test(snapshot)) throw new Error(`unexpected snapshot id ${snapshot}`);
  fs.rmSync(file, { force: true });
  const out = fs.createWriteStream(file, { flags: "wx", mode: 0o600 });
  const opened = new Promise<void>((resolve, reject) => out.once("open", () => resolve()).once("error", reject));
  const hash = crypto.createHash("sha256");
  const checker = new PgCopyChecker(task.columns.length);
  let size = 0;
  let stderr = "";
  await opened;
  const child = runPsql(psql, [
    "SET row_security = off",
    "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
    `SET TRANSACTION SNAPSHOT '${snapshot}'`,
    copyOutSql(task),
    "COMMIT",
  ], pgEnv(target, undefined, application), {}, signal);
  child.stderr!.on("data", (d: Buffer) => (stderr += d));
  let invalid: Error | undefined;
  const closed = new Promise<number | null>((resolve) => {
    child.on("error", (error) => (stderr += String(error.message)));
    child.on("close", resolve);
  });
  const written = new Promise<void>((resolve, reject) => {
    child.stdout!.on("data", (chunk: Buffer) => {
      size += chunk.length;
      hash.update(chunk);
      if (!invalid) {
        try {
          checker.push(chunk);
        } catch (error) {
          invalid = error as Error;
        }
      }
      if (!out.write(chunk)) {
        child.stdout!.pause();
        out.once("drain", () => child.stdout!.resume());
      }
    });
    child.stdout!.on("end", () => out.end());
    out.on("finish", resolve);
    out.on("error", (error) => {
      child.kill("SIGTERM"); // a full disk: psql must not wait on a paused pipe
      reject(error);
    });
  });
  const [code] = await Promise.all([closed, written]);
  if (signal?.aborted) throw new Error("interrupted");
  if (code !== 0) throw new Error(firstError(stderr));
  let rows: number;
  try {
    if (invalid) throw invalid;
    rows = checker.end();
  } catch (error) {
    throw new Error(`${path.basename(file)} does not verify: ${(error as Error).message}`);
  }
  return { schema: task.schema, table: task.table, columns: task.columns, file: path.basename(file), format: "binary", sha256: hash.digest("hex"), size, rows };
}

/**
 * Checks a data file on disk against its manifest entry: size, sha256, and the PGCOPY structure
 * with the manifest's row count. Throws a one-line MigrationError naming the database.
 */
export async function verifyDataFile(dir: string, entry: DataFile, db: DbName): Promise<void> {
  const file = path.join(dir, entry.file);
  const fail = (why: string) => new MigrationError(`backup file ${entry.file} does not verify: ${why}`, db);
  if (!fs.existsSync(file)) throw fail("it is missing");
  const hash = crypto.createHash("sha256");
  const checker = new PgCopyChecker(entry.columns.length);
  let size = 0;
  let invalid: Error | undefined;
  for await (const chunk of fs.createReadStream(file, { highWaterMark: 1 << 20 })) {
    size += (chunk as Buffer).length;
    hash.update(chunk as Buffer);
    if (!invalid) {
      try {
        checker.push(chunk as Buffer);
      } catch (error) {
        invalid = error as Error;
      }
    }
  }
  if (size !== entry.size || hash.digest("hex") !== entry.sha256) throw fail(`it does not match its manifest checksum${size !== entry.size ? ` (${size} bytes, the manifest says ${entry.size})` : ""}`);
  let rows: number;
  try {
    if (invalid) throw invalid;
    rows = checker.end();
  } catch (error) {
    throw fail((error as Error).message);
  }
  if (rows !== entry.rows) throw fail(`${rows} rows, the manifest says ${entry.rows}`);
}

/**
 * Loads a data file into its table of the database `env` names (created by the archive's pre-data
 * section). COPY FROM must report the manifest's row count.
 */
export async function copyIn(psql: string, env: NodeJS.ProcessEnv, dir: string, entry: DataFile, db: DbName, signal?: AbortSignal): Promise<void> {
  const fd = fs.openSync(path.join(dir, entry.file), "r");
  try {
    const sql = `COPY ${qualified(entry)} (${entry.columns.map(quoteIdent).join(", ")}) FROM STDIN (FORMAT binary)`;
    // Not quiet: psql says `COPY <rows>` on stdout.
    const args = ["-X", "--no-password", "-v", "ON_ERROR_STOP=1", "-c", sql];
    const child = spawn(psql, args, { env, stdio: [fd, "pipe", "pipe"], ...(signal ? { signal, killSignal: "SIGTERM" as const } : {}) });
    let stdout = "";
    let stderr = "";
    child.stdout!.on("data", (d: Buffer) => (stdout += d));
    child.stderr!.on("data", (d: Buffer) => (stderr += d));
    const code = await new Promise<number | null>((resolve) => {
      child.on("error", (error) => (stderr += String(error.message)));
      child.on("close", resolve);
    });
    if (signal?.aborted) throw new MigrationError("interrupted", db);
    if (code !== 0) throw new MigrationError(`loading ${entry.file} into ${qualified(entry)} failed: ${firstError(stderr)}`, db);
    const loaded = Number(/^COPY (\d+)$/m.exec(stdout)?.[1] ?? NaN);
    if (loaded !== entry.rows) throw new MigrationError(`loading ${entry.file} into ${qualified(entry)} loaded ${loaded} rows, the manifest says ${entry.rows}`, db);
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Restores an archive and its data files: the archive's pre-data section, then its data section
 * and the data files at once, then its post-data section (indexes, constraints, triggers), so the
 * files load before the indexes are built, as pg_restore's own data would. Without data files,
 * one pg_restore. `restore(section)` runs pg_restore (with `--section=<section>` when given).
 */
export async function restoreWithData(restore: (section?: "pre-data" | "data" | "post-data") => Promise<void>, data: DataFile[] | undefined, load: (entry: DataFile) => Promise<void>): Promise<void> {
  if (!data?.length) return restore();
  await restore("pre-data");
  await settleAll([restore("data"), ...data.map(load)]);
  await restore("post-data");
}
