// The data of a database's big tables, beside its `pg_dump -Fc` archive: binary COPY files
// (`COPY ... TO STDOUT (FORMAT binary)`), taken from the archive's own snapshot. A vector's text
// form (float formatting) is most of what pg_dump spends on vector data, and its binary form is
// 2.5 times smaller; the text of other big tables is cheaper in binary too. The tables are copied
// at once, each by a backend of its own, beside pg_dump (which dumps the rest).
//
// psql writes each file itself; read back from disk as it grows, it is checked (the PGCOPY header,
// every tuple's field count and field lengths, the trailer, nothing after it) and checksummed in
// one pass; its manifest entry says which table and columns it holds, its sha256, size and rows.
// A restore checks a file the same way, against the manifest, and COPY FROM must load exactly the
// rows of the manifest.
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

/**
 * Tables of this size (data and TOAST) or more go into binary COPY files. The size is the one the
 * catalog keeps (pg_class.relpages, as of the last VACUUM or ANALYZE, which autovacuum keeps
 * current): reading the files' sizes would wait for a lock someone holds on the table, where
 * pg_dump is the one to wait. A table grown since is dumped by pg_dump, only slower.
 */
export const BINARY_TABLE_BYTES = 8 * 1048576;

/** One binary COPY file of a backup: the rows of one table. */
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

/** A table to copy out, under the snapshot of the archive. */
export interface DataTask {
  schema: string;
  table: string;
  columns: string[];
}

const qualified = (t: { schema: string; table: string }) => `${quoteIdent(t.schema)}.${quoteIdent(t.table)}`;

/** The table for pg_dump's --exclude-table-data: a pattern quoted so it matches only this table. */
export function excludePattern(t: { schema: string; table: string }): string {
  return `--exclude-table-data=${qualified(t)}`;
}

/**
 * The big tables of the database `client` reads (in the transaction whose snapshot the backup
 * uses), as copy tasks, biggest first. Only tables whose every column has a binary form that does
 * not name OIDs (which differ from database to database): built-in types but the reg* ones,
 * enums, ranges, extension base types such as vector, domains over them, arrays of built-in types.
 * Others stay in the archive. Not before PostgreSQL 12 (generated columns).
 */
export async function bigTables(client: Client, serverMajor: number): Promise<DataTask[]> {
  if (serverMajor < 12) return [];
  const { rows } = await client.query<DataTask>(`
    SELECT n.nspname AS schema, c.relname AS table, array_agg(a.attname::text ORDER BY a.attnum) AS columns
      FROM pg_class c
      JOIN pg_namespace n ON n.oid = c.relnamespace
      JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
      JOIN pg_type t ON t.oid = a.atttypid
      JOIN pg_type b ON b.oid = CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END
      LEFT JOIN pg_type e ON e.oid = b.typelem AND b.typlen = -1
      LEFT JOIN pg_class toast ON toast.oid = c.reltoastrelid
     WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'
       AND (greatest(c.relpages, 0) + greatest(coalesce(toast.relpages, 0), 0))::bigint * current_setting('block_size')::int >= $1
       AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
     GROUP BY n.nspname, c.relname, c.oid, c.relpages, toast.relpages
    HAVING bool_and(b.typtype IN ('b', 'e', 'r') AND b.typsend <> 0 AND b.typreceive <> 0
                    -- regclass, regtype, ...: sent as the OID, which names another object in a restored copy
                    AND NOT (b.typnamespace = 'pg_catalog'::regnamespace AND b.typname LIKE 'reg%')
                    AND (e.oid IS NULL OR (e.oid < 16384 AND e.typtype = 'b' AND e.typname NOT LIKE 'reg%')))
     ORDER BY greatest(c.relpages, 0) + greatest(coalesce(toast.relpages, 0), 0) DESC, 1, 2`, [BINARY_TABLE_BYTES]);
  return rows;
}

/**
 * A COPY session's settings, as pg_dump sets its own: no statement or idle timeout of the role's
 * cuts a long copy, and its lock waits at most a minute (like pg_dump's --lock-wait-timeout). The
 * snapshot session already holds the table: a lock request queued behind someone's ACCESS
 * EXCLUSIVE, which waits for that session, would otherwise wait forever, with the table's readers
 * queued behind both.
 */
const COPY_OUT_OPTIONS = "-c lock_timeout=60s -c statement_timeout=0 -c idle_in_transaction_session_timeout=0";
const COPY_IN_OPTIONS = "-c statement_timeout=0";

/** The COPY that reads one table, binary, to stdout. */
function copyOutSql(task: DataTask): string {
  return `COPY ${qualified(task)} (${task.columns.map(quoteIdent).join(", ")}) TO STDOUT (FORMAT binary)`;
}

/**
 * Checks a binary COPY stream as it goes by: the signature, flags without OIDs, the header
 * extension, every tuple's field count (the file's columns) and field lengths, the trailer, and
 * nothing after it. `end()` returns the number of rows or throws what is wrong. One tight loop over
 * each chunk (millions of fields a second); only the few bytes of a length cut by a chunk's end
 * are carried over.
 */
const HEADER = 0;
const TUPLE = 1;
const FIELD = 2;
const DONE = 3;

export class PgCopyChecker {
  private static readonly SIGNATURE = Buffer.from("PGCOPY\n\xff\r\n\0", "latin1");
  private carry: Buffer | undefined;
  private state = HEADER;
  private skip = 0;
  private fieldsLeft = 0;
  /** Bytes before the current chunk, for the error messages. */
  private offset = 0;
  rows = 0;

  constructor(private readonly columns: number) {}

  push(chunk: Buffer): void {
    const buf = this.carry ? Buffer.concat([this.carry, chunk]) : chunk;
    this.carry = undefined;
    const n = buf.length;
    let pos = 0;
    let { skip, fieldsLeft, rows, state } = this;
    const columns = this.columns;
    try {
      scan: for (;;) {
        if (skip) {
          if (n - pos < skip) {
            skip -= n - pos;
            pos = n;
            break;
          }
          pos += skip;
          skip = 0;
        }
        if (state === FIELD) {
          // The fields of one tuple: a length each (-1 for NULL), then that many bytes.
          while (fieldsLeft) {
            if (n - pos < 4) break scan;
            const length = (buf[pos] << 24) | (buf[pos + 1] << 16) | (buf[pos + 2] << 8) | buf[pos + 3];
            if (length < -1) throw new Error(`tuple ${rows} has a field of length ${length} (at byte ${this.offset + pos})`);
            pos += 4;
            fieldsLeft--;
            if (length > 0) {
              if (n - pos < length) {
                skip = length - (n - pos);
                pos = n;
                if (!fieldsLeft) state = TUPLE;
                break scan;
              }
              pos += length;
            }
          }
          state = TUPLE;
        } else if (state === TUPLE) {
          if (n - pos < 2) break;
          const fields = ((buf[pos] << 24) | (buf[pos + 1] << 16)) >> 16;
          if (fields === -1) {
            pos += 2;
            state = DONE;
            continue;
          }
          if (fields !== columns) throw new Error(`tuple ${rows + 1} has ${fields} fields, not ${columns} (at byte ${this.offset + pos})`);
          pos += 2;
          rows++;
          fieldsLeft = fields;
          state = FIELD;
        } else if (state === HEADER) {
          if (n - pos < 19) break;
          if (!buf.subarray(pos, pos + 11).equals(PgCopyChecker.SIGNATURE)) throw new Error("no PGCOPY signature");
          if (buf.readUInt32BE(pos + 11) & 0x0001ffff) throw new Error("unexpected header flags");
          skip = buf.readUInt32BE(pos + 15);
          if (skip > 1 << 20) throw new Error("header extension too long");
          pos += 19;
          state = TUPLE;
        } else {
          if (pos < n) throw new Error(`${n - pos} bytes after the trailer`);
          break;
        }
      }
    } finally {
      Object.assign(this, { skip, fieldsLeft, rows, state });
    }
    if (pos < n) this.carry = Buffer.from(buf.subarray(pos));
    this.offset += pos;
  }

  /** The rows, once the stream is whole. */
  end(): number {
    if (this.state !== DONE || this.skip) throw new Error(this.state === HEADER ? "no PGCOPY header (empty or cut short)" : `cut short after ${this.rows} rows (no trailer)`);
    return this.rows;
  }
}

/** A data file's size, sha256 and rows, or what is wrong with its PGCOPY structure, taken as its bytes go by. */
class DataFileDigest {
  private readonly hash = crypto.createHash("sha256");
  private readonly checker: PgCopyChecker;
  size = 0;
  private problem: string | undefined;

  constructor(columns: number) {
    this.checker = new PgCopyChecker(columns);
  }

  push(chunk: Buffer): void {
    this.size += chunk.length;
    this.hash.update(chunk);
    if (this.problem !== undefined) return;
    try {
      this.checker.push(chunk);
    } catch (error) {
      this.problem = (error as Error).message;
    }
  }

  /** Once the file is whole. */
  end(): { size: number; sha256: string; rows?: number; problem?: string } {
    const sha256 = this.hash.digest("hex");
    if (this.problem === undefined) {
      try {
        return { size: this.size, sha256, rows: this.checker.end() };
      } catch (error) {
        this.problem = (error as Error).message;
      }
    }
    return { size: this.size, sha256, problem: this.problem };
  }
}

/** Reads a data file once: its size, sha256 and rows, or what is wrong with its PGCOPY structure. */
async function readDataFile(file: string, columns: number): Promise<ReturnType<DataFileDigest["end"]>> {
  const digest = new DataFileDigest(columns);
  for await (const chunk of fs.createReadStream(file, { highWaterMark: 1 << 20 })) digest.push(chunk as Buffer);
  return digest.end();
}

/**
 * Copies one task out into `file` (created 0600): psql, under the exported `snapshot`, writes the
 * binary COPY straight into the file, and we read the file back as it grows, checking and
 * checksumming it (and flushing it to disk every 8 MiB) while the server still sends, so little
 * is left to do when psql is done. Rejects with psql's error (the caller retries a lost connection)
 * or, when the file does not verify, with a MigrationError naming the database.
 */
export async function copyOut(psql: string, target: DbTarget, task: DataTask, snapshot: string, file: string, db: DbName, application: string, signal?: AbortSignal): Promise<DataFile> {
  if (!/^[0-9A-Fa-f-]+$/.test(snapshot)) throw new Error(`unexpected snapshot id ${snapshot}`);
  fs.rmSync(file, { force: true });
  const fd = fs.openSync(file, "wx", 0o600);
  const reader = await fs.promises.open(file, "r").catch((error) => {
    fs.closeSync(fd);
    throw error;
  });
  try {
    const commands = [
      "SET row_security = off",
      "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
      `SET TRANSACTION SNAPSHOT '${snapshot}'`,
      copyOutSql(task),
      "COMMIT",
    ];
    const args = ["-X", "-q", "--no-password", "-v", "ON_ERROR_STOP=1", ...commands.flatMap((c) => ["-c", c])];
    let child;
    try {
      child = spawn(psql, args, { env: { ...pgEnv(target, undefined, application), PGOPTIONS: COPY_OUT_OPTIONS }, stdio: ["ignore", fd, "pipe"], ...(signal ? { signal, killSignal: "SIGTERM" as const } : {}) });
    } finally {
      fs.closeSync(fd); // psql has its own
    }
    let stderr = "";
    child.stderr!.on("data", (d: Buffer) => (stderr += d));
    let code: number | null | undefined;
    let wake: (() => void) | undefined;
    const closed = new Promise<void>((resolve) => {
      child.on("error", (error) => (stderr += String(error.message)));
      child.on("close", (c) => {
        code = c;
        wake?.();
        resolve();
      });
    });
    const digest = new DataFileDigest(task.columns.length);
    const buffer = Buffer.allocUnsafe(1 << 20);
    let flushed = 0;
    let flushing: Promise<unknown> | undefined;
    for (;;) {
      const exited = code !== undefined;
      const { bytesRead } = await reader.read(buffer, 0, buffer.length, digest.size);
      if (bytesRead) {
        digest.push(buffer.subarray(0, bytesRead));
        if (digest.size - flushed >= 8 << 20 && !flushing) {
          flushed = digest.size;
          flushing = reader.datasync().catch(() => undefined).then(() => (flushing = undefined));
        }
        // Caught up with psql (which writes 4 KiB at a time): wait for more rather than read crumbs.
        if (exited || bytesRead >= buffer.length / 4) continue;
      }
      if (exited) break;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 10);
        wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      wake = undefined;
    }
    await Promise.all([closed, flushing]);
    if (signal?.aborted) throw new Error("interrupted");
    if (code !== 0) throw new Error(firstError(stderr));
    const { size, sha256, rows, problem } = digest.end();
    if (problem !== undefined) throw new MigrationError(`backup file ${path.basename(file)} does not verify: ${problem}`, db);
    return { schema: task.schema, table: task.table, columns: task.columns, file: path.basename(file), format: "binary", sha256, size, rows: rows! };
  } finally {
    await reader.close();
  }
}

/**
 * Checks a data file on disk against its manifest entry: size, sha256, and the PGCOPY structure
 * with the manifest's row count. Throws a one-line MigrationError naming the database.
 */
export async function verifyDataFile(dir: string, entry: DataFile, db: DbName): Promise<void> {
  const file = path.join(dir, entry.file);
  const fail = (why: string) => new MigrationError(`backup file ${entry.file} does not verify: ${why}`, db);
  if (!fs.existsSync(file)) throw fail("it is missing");
  const read = await readDataFile(file, entry.columns.length);
  if (read.size !== entry.size || read.sha256 !== entry.sha256) throw fail(`it does not match its manifest checksum${read.size !== entry.size ? ` (${read.size} bytes, the manifest says ${entry.size})` : ""}`);
  if (read.problem !== undefined) throw fail(read.problem);
  if (read.rows !== entry.rows) throw fail(`${read.rows} rows, the manifest says ${entry.rows}`);
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
    const child = spawn(psql, args, { env: { ...env, PGOPTIONS: COPY_IN_OPTIONS }, stdio: [fd, "pipe", "pipe"], ...(signal ? { signal, killSignal: "SIGTERM" as const } : {}) });
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
 * and the data files (`jobs` at a time), then its post-data section (indexes, constraints, triggers), so the
 * files load before the indexes are built, as pg_restore's own data would. Without data files,
 * one pg_restore. `restore(section)` runs pg_restore (with `--section=<section>` when given).
 */
export async function restoreWithData(restore: (section?: "pre-data" | "data" | "post-data") => Promise<void>, data: DataFile[] | undefined, load: (entry: DataFile) => Promise<void>, jobs = 2): Promise<void> {
  if (!data?.length) return restore();
  await restore("pre-data");
  // `jobs` files at a time (each a backend), beside pg_restore's own jobs.
  await settleAll<unknown>([restore("data"), inParallel(data, jobs, load)]);
  await restore("post-data");
}

/** Runs `work` on every item, `jobs` at a time; all finish before the first failure is thrown. */
export async function inParallel<T, R>(items: T[], jobs: number, work: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const results: Array<Promise<R>> = [];
  let next = 0;
  const worker = async () => {
    for (let i = next++; i < items.length; i = next++) {
      const p = work(items[i], i);
      results[i] = p;
      await p.catch(() => undefined);
    }
  };
  await Promise.all(Array.from({ length: Math.min(jobs, items.length) }, worker));
  return settleAll(results);
}
