// Big tables' data in binary COPY files beside the pg_dump archive: what goes there (vector tables,
// and text tables of 8 MiB or more), that db:restore (in
// place and into a fresh database) and a rehearsal's copy from the backup give back the same rows
// and the same catalog, and that a damaged file is refused with one line naming the database.
import * as crypto from "crypto";
import * as fs from "fs";
import * as path from "path";
import { PgCopyChecker, verifyDataFile } from "../src/backup/table-data";
import type { BackupManifest } from "../src/backup/backup";
import { dumpAndRestore } from "../src/rehearsal/copy";
import { findPgTool, pgEnv, runPgTool } from "../src/postgres/client-programs";
import { MigrationError } from "../src/errors";
import type { DbName } from "../src/databases";
import { spawn } from "child_process";
import { CLI, cliEnv, runCli } from "./support/cli";
import { serverUrl, testDatabases, withClient } from "./support/databases";

jest.setTimeout(240_000);

/** Each table's rows, sorted, as one md5 (vectors, NULLs, arrays, jsonb all in their text form). */
async function contents(database: string): Promise<Record<string, string>> {
  return withClient(database, async (c) => {
    const { rows } = await c.query<{ t: string }>(`
      SELECT format('%I.%I', n.nspname, c.relname) AS t
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
       WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%' ORDER BY 1`);
    const out: Record<string, string> = {};
    for (const r of rows) {
      const [{ n, md5 }] = (await c.query(`SELECT count(*)::int AS n, md5(coalesce(string_agg(x::text, E'\\n' ORDER BY x::text), '')) AS md5 FROM ${r.t} x`)).rows;
      out[r.t] = `${n} ${md5}`;
    }
    return out;
  });
}

/** The catalog as pg_dump --schema-only prints it (tables, columns, defaults, indexes, constraints, triggers). */
async function catalog(database: string): Promise<string> {
  const target = { db: "admindb" as DbName, url: serverUrl(database), database, source: "test", display: "" };
  const r = await runPgTool(findPgTool("pg_dump", 0), ["--schema-only", "--no-password"], pgEnv(target));
  if (r.code !== 0) throw new Error(r.stderr);
  return r.stdout.replace(/^-- Dumped (from|by) .*$/gm, "").replace(/^\\(un)?restrict .*$/gm, "");
}

describe("binary COPY data files in backups", () => {
  const dbs = testDatabases("bdata");
  let runId: string;
  let dir: string;
  let manifest: BackupManifest;
  const extra: string[] = [];

  beforeAll(async () => {
    expect((await runCli(["migration:run", "--no-backup"], dbs.env)).code).toBe(0);
    // apidb: 40k profiles of about 300 bytes (one text table above 8 MiB, in one file).
    await withClient(dbs.names.apidb, (c) => c.query(`
      INSERT INTO profiles (user_id, name, first_name, last_name, address, phone)
        SELECT uuid_generate_v4(), 'name ' || g, CASE WHEN g % 7 = 0 THEN NULL ELSE 'First' || g END, E'Tab\\tand\\nnewline ' || g,
               repeat('Minato-ku ' || md5(g::text) || ' ', 6), NULL
          FROM generate_series(1, 40000) g`));
    // admindb: 3k embeddings of 768 dimensions (9 MiB), a few hundred of them random, some NULL;
    // 20k documents with text arrays and json (above 8 MiB).
    await withClient(dbs.names.admindb, (c) => c.query(`
      INSERT INTO knowledge_bases (name, user_id) SELECT 'kb ' || g, uuid_generate_v4() FROM generate_series(1, 10) g;
      INSERT INTO documents (knowledge_base_id, filename, original_filename, file_path, mime_type, file_size, text_content, tags, processing_metadata, original_metadata)
        SELECT (SELECT id FROM knowledge_bases ORDER BY id OFFSET (g % 10) LIMIT 1), 'doc' || g || '.pdf', 'Döcument ''' || g || '''.pdf', '/data/' || g,
               'application/pdf', 1000 + g, repeat('lorem ipsum ' || g || ' ', 40), ARRAY['tag' || (g % 10), NULL, 'b"q'],
               json_build_object('pages', g), CASE WHEN g % 3 = 0 THEN NULL ELSE jsonb_build_object('k', g, 'a', jsonb_build_array(1.5, 'x')) END
          FROM generate_series(1, 20000) g;
      INSERT INTO langchain_pg_embedding (collection_id, embedding, document, cmetadata, chunk_index)
        SELECT (SELECT uuid FROM langchain_pg_collection LIMIT 1),
               CASE WHEN g % 500 = 0 THEN NULL
                    WHEN g <= 300 THEN (SELECT array_agg(random()::real - 0.5) FROM generate_series(1, 768 + 0 * g))::vector
                    ELSE array_fill((g % 997)::real / 997 + 1e-7, ARRAY[768])::vector END,
               'chunk ' || g, jsonb_build_object('g', g), g % 8
          FROM generate_series(1, 3000) g`));
    // Two tables no migration made: one with a generated column (in a data file without it, computed
    // again on restore), one with a composite-type column and one with reg* columns (whose binary
    // forms are OIDs, another object's in a restored copy: they stay in the archive).
    await withClient(dbs.names.admindb, (c) => c.query(`
      CREATE TABLE extra_generated (id bigserial PRIMARY KEY, body text NOT NULL, body_length int GENERATED ALWAYS AS (length(body)) STORED);
      INSERT INTO extra_generated (body) SELECT repeat(md5(g::text), 10) FROM generate_series(1, 25000) g;
      CREATE TYPE extra_pair AS (a int, b text);
      CREATE TABLE extra_pairs (id serial PRIMARY KEY, p extra_pair, payload text);
      INSERT INTO extra_pairs (p, payload) SELECT ROW(g, 'b' || g)::extra_pair, repeat(md5(g::text), 10) FROM generate_series(1, 25000) g;
      CREATE TABLE extra_refs (id serial PRIMARY KEY, r regclass, rs regtype[], payload text);
      INSERT INTO extra_refs (r, rs, payload) SELECT 'documents'::regclass, ARRAY['extra_pair'::regtype], repeat(md5(g::text), 12) FROM generate_series(1, 25000) g`));
    // The sizes the backup goes by are the catalog's, kept by VACUUM (autovacuum, in production).
    for (const db of ["apidb", "admindb"] as DbName[]) await withClient(dbs.names[db], (c) => c.query("VACUUM ANALYZE"));
    const r = await runCli(["db:backup", "--json"], dbs.env);
    if (r.code !== 0) throw new Error(`db:backup failed: ${r.stderr}`);
    ({ runId, dir, manifest } = JSON.parse(r.stdout));
  });
  afterAll(async () => {
    await withClient("postgres", async (c) => {
      for (const name of extra) await c.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
    });
    await dbs.drop();
  });

  const entry = (db: DbName) => manifest.databases.find((d) => d.db === db)!;

  it("puts the big tables' data in binary COPY files, 0600, listed in the manifest with their rows", async () => {
    const files = (db: DbName) => (entry(db).data ?? []).map((d) => [d.table, d.file, d.rows]);
    expect(files("authdb")).toEqual([]);
    expect(files("apidb")).toEqual([["profiles", "apidb.data-1.pgcopy", 40000]]);
    const admin = entry("admindb").data!;
    // Biggest first, numbered in that order; extra_pairs (a composite column) and extra_refs (reg*) stay in the archive.
    expect(admin.map((d) => d.file)).toEqual(["admindb.data-1.pgcopy", "admindb.data-2.pgcopy", "admindb.data-3.pgcopy"]);
    const table = (name: string) => admin.find((d) => d.table === name)!;
    expect(admin.map((d) => [d.table, d.rows]).sort()).toEqual([["documents", 20000], ["extra_generated", 25000], ["langchain_pg_embedding", 3000]]);
    expect(table("extra_generated").columns).toEqual(["id", "body"]);
    expect(table("langchain_pg_embedding").columns).toEqual(["uuid", "collection_id", "embedding", "document", "cmetadata", "custom_id", "document_id", "chunk_index", "created_at", "updated_at"]);
    for (const d of [...admin, ...entry("apidb").data!]) {
      expect(d.format).toBe("binary");
      const stat = fs.statSync(path.join(dir, d.file));
      expect([stat.mode & 0o777, stat.size]).toEqual([0o600, d.size]);
      await verifyDataFile(dir, d, "admindb");
    }
    expect(fs.statSync(dir).mode & 0o777).toBe(0o700);
    // The archive holds the rest of the data, and counts the copied tables among its tables.
    expect(entry("admindb").tables).toBeGreaterThanOrEqual(11);
    expect(entry("admindb").applied.length).toBeGreaterThan(0);
  });

  it("a compressed backup (MIGRATION_BACKUP_COMPRESSION=1) keeps every table in its archive", async () => {
    const r = await runCli(["db:backup", "--db", "apidb", "--json"], { ...dbs.env, MIGRATION_BACKUP_COMPRESSION: "1" });
    expect(r.code).toBe(0);
    const report = JSON.parse(r.stdout) as { dir: string; manifest: BackupManifest };
    expect(report.manifest.databases.map((d) => [d.db, d.data, d.tables])).toEqual([["apidb", undefined, entry("apidb").tables]]);
    expect(fs.readdirSync(report.dir).sort()).toEqual(["apidb.dump", "manifest.json"]);
  });

  it("db:restore --into a fresh database gives the same rows and the same catalog", async () => {
    for (const db of ["admindb", "apidb"] as DbName[]) {
      const into = `${dbs.names[db]}_fresh`;
      extra.push(into);
      const r = await runCli(["db:restore", runId, "--db", db, "--into", into], dbs.env);
      expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: "" });
      expect(await contents(into)).toEqual(await contents(dbs.names[db]));
      expect(await catalog(into)).toEqual(await catalog(dbs.names[db]));
    }
  });

  it("db:restore in place puts the rows back after they changed", async () => {
    const before = await contents(dbs.names.admindb);
    const schema = await catalog(dbs.names.admindb);
    await withClient(dbs.names.admindb, (c) => c.query(`DELETE FROM langchain_pg_embedding WHERE chunk_index = 3; UPDATE documents SET tags = NULL WHERE file_size % 2 = 0`));
    expect(await contents(dbs.names.admindb)).not.toEqual(before);
    const r = await runCli(["db:restore", runId, "--db", "admindb"], dbs.env);
    expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: "" });
    expect(await contents(dbs.names.admindb)).toEqual(before);
    expect(await catalog(dbs.names.admindb)).toEqual(schema);
  });

  it("a rehearsal's copy from the backup loads the data files too", async () => {
    const scratch = `${dbs.names.admindb}_scratch`;
    extra.push(scratch);
    await withClient("postgres", (c) => c.query(`CREATE DATABASE "${scratch}"`));
    const target = { db: "admindb" as DbName, url: serverUrl(scratch), database: scratch, source: "test", display: "" };
    await dumpAndRestore({ kind: "backup", runId, file: path.join(dir, "admindb.dump"), entry: entry("admindb") }, target, { db: "admindb", runId, jobs: 2, connectTimeoutMs: 5000 });
    expect(await contents(scratch)).toEqual(await contents(dbs.names.admindb));
  });

  it("Ctrl-C while it waits for a big table's lock: no run directory is left", async () => {
    const existing = fs.readdirSync(dbs.env.MIGRATION_BACKUP_DIR).sort();
    await withClient(dbs.names.admindb, async (hold) => {
      await hold.query(`BEGIN; LOCK TABLE documents IN ACCESS EXCLUSIVE MODE`);
      const child = spawn(process.execPath, [CLI, "db:backup", "--db", "admindb"], { env: cliEnv(dbs.env), stdio: ["ignore", "ignore", "pipe"] });
      let stderr = "";
      child.stderr!.on("data", (d) => (stderr += d));
      const done = new Promise<number | null>((resolve) => child.on("close", resolve));
      const waiting = () => withClient("postgres", async (c) => (await c.query(
        `SELECT 1 FROM pg_stat_activity WHERE datname = $1 AND application_name LIKE 'ai-micro-migrations run %' AND wait_event_type = 'Lock'`, [dbs.names.admindb])).rowCount === 1);
      for (let tries = 0; !(await waiting()); tries++) {
        if (tries > 600) throw new Error("db:backup never waited for the lock");
        await new Promise((r) => setTimeout(r, 50));
      }
      child.kill("SIGINT");
      expect(await done).toBe(1);
      expect(stderr).toMatch(/backup interrupted: its run directory was removed/);
      await hold.query("ROLLBACK");
    });
    expect(fs.readdirSync(dbs.env.MIGRATION_BACKUP_DIR).sort()).toEqual(existing);
  });

  describe("a damaged data file is refused, in one line naming the database", () => {
    /** A copy of the run whose admindb.data-1.pgcopy `damage` changes; `sameChecksum` writes its new sha256 and size into the manifest. */
    function tampered(label: string, damage: (bytes: Buffer) => Buffer, sameChecksum: boolean): string {
      const id = `${runId}-${label}`;
      const to = path.join(dbs.env.MIGRATION_BACKUP_DIR, id);
      fs.cpSync(dir, to, { recursive: true });
      const file = path.join(to, "admindb.data-1.pgcopy");
      const bytes = damage(fs.readFileSync(file));
      fs.writeFileSync(file, bytes);
      if (sameChecksum) {
        const m = JSON.parse(fs.readFileSync(path.join(to, "manifest.json"), "utf8")) as BackupManifest;
        const d = m.databases.find((e) => e.db === "admindb")!.data![0];
        d.sha256 = crypto.createHash("sha256").update(bytes).digest("hex");
        d.size = bytes.length;
        fs.writeFileSync(path.join(to, "manifest.json"), JSON.stringify(m));
      }
      return id;
    }

    async function refused(id: string): Promise<string> {
      const into = `${dbs.names.admindb}_bad`;
      const r = await runCli(["db:restore", id, "--db", "admindb", "--into", into], dbs.env);
      expect(r.code).toBe(1);
      const databases = await withClient("postgres", async (c) => (await c.query(`SELECT datname FROM pg_database WHERE datname LIKE $1`, [`${into}%`])).rows);
      expect(databases).toEqual([]); // refused before anything was created
      return r.stderr.trim();
    }

    it("a changed byte: the checksum does not match", async () => {
      const id = tampered("flipped", (b) => {
        b[Math.floor(b.length / 2)] ^= 0xff;
        return b;
      }, false);
      expect(await refused(id)).toBe("error: admindb: backup file admindb.data-1.pgcopy does not verify: it does not match its manifest checksum");
    });

    it("cut short, its manifest checksum rewritten to match: no trailer", async () => {
      const id = tampered("truncated", (b) => b.subarray(0, b.length - 5000), true);
      expect(await refused(id)).toMatch(/^error: admindb: backup file admindb\.data-1\.pgcopy does not verify: cut short after \d+ rows \(no trailer\)$/);
    });

    it("a tuple's field count changed, its manifest checksum rewritten to match", async () => {
      const id = tampered("fields", (b) => {
        b.writeInt16BE(9, 19); // the first tuple's field count (after the 19-byte header)
        return b;
      }, true);
      expect(await refused(id)).toBe(`error: admindb: backup file admindb.data-1.pgcopy does not verify: tuple 1 has 9 fields, not ${entry("admindb").data![0].columns.length} (at byte 19)`);
    });

    it("whole but with rows missing from what the manifest says", async () => {
      const m = JSON.parse(fs.readFileSync(path.join(dir, "manifest.json"), "utf8")) as BackupManifest;
      const d = m.databases.find((e) => e.db === "admindb")!.data![0];
      await expect(verifyDataFile(dir, { ...d, rows: d.rows + 1 }, "admindb")).rejects.toThrow(new MigrationError(`backup file admindb.data-1.pgcopy does not verify: ${d.rows} rows, the manifest says ${d.rows + 1}`, "admindb"));
    });
  });
});

describe("PgCopyChecker", () => {
  const header = Buffer.concat([Buffer.from("PGCOPY\n\xff\r\n\0", "latin1"), Buffer.alloc(8)]);
  const tuple = (...fields: Array<Buffer | null>) => {
    const parts: Buffer[] = [Buffer.from([fields.length >> 8, fields.length & 0xff])];
    for (const f of fields) {
      const len = Buffer.alloc(4);
      len.writeInt32BE(f ? f.length : -1);
      parts.push(len);
      if (f) parts.push(f);
    }
    return Buffer.concat(parts);
  };
  const trailer = Buffer.from([0xff, 0xff]);
  const check = (bytes: Buffer, columns: number, chunk = bytes.length) => {
    const c = new PgCopyChecker(columns);
    for (let at = 0; at < bytes.length; at += chunk) c.push(bytes.subarray(at, at + chunk));
    return c.end();
  };

  it("counts the rows of a whole stream, however it is cut into chunks", () => {
    const stream = Buffer.concat([header, tuple(Buffer.from("ab"), null), tuple(Buffer.alloc(0), Buffer.from("xyz")), trailer]);
    for (const chunk of [1, 2, 3, 5, 64]) expect(check(stream, 2, chunk)).toBe(2);
    expect(check(Buffer.concat([header, trailer]), 3)).toBe(0);
  });

  it("says what is wrong", () => {
    expect(() => check(Buffer.from("COPY"), 1)).toThrow("no PGCOPY header (empty or cut short)");
    expect(() => check(Buffer.concat([Buffer.from("PGCOPX\n\xff\r\n\0", "latin1"), Buffer.alloc(8), trailer]), 1)).toThrow("no PGCOPY signature");
    expect(() => check(Buffer.concat([header, tuple(Buffer.from("abc"))]), 1)).toThrow("cut short after 1 rows (no trailer)");
    expect(() => check(Buffer.concat([header, tuple(Buffer.from("abc")).subarray(0, 8)]), 1)).toThrow("cut short after 1 rows (no trailer)");
    expect(() => check(Buffer.concat([header, tuple(Buffer.from("a"), Buffer.from("b")), trailer]), 1)).toThrow("tuple 1 has 2 fields, not 1 (at byte 19)");
    expect(() => check(Buffer.concat([header, trailer, Buffer.from("x")]), 1)).toThrow("1 bytes after the trailer");
    const negative = Buffer.concat([header, Buffer.from([0, 1, 0xff, 0xff, 0xff, 0xfe]), trailer]);
    expect(() => check(negative, 1)).toThrow("tuple 1 has a field of length -2 (at byte 21)");
  });
});
