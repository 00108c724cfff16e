// The deploy's backup step (db:backup: pg_dump -Fc of the three databases, each archive verified
// with pg_restore --list and checksummed) against pg_dumpall of the same server, on a seeded
// dataset: 200k documents and 20k embeddings (vector(768)) in admindb, users and profiles too.
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { backupDatabases } from "../src/backup/backup";
import { loadConfig } from "../src/config";
import { DATABASES } from "../src/databases";
import { clientTool, CLI, envFor, libpqEnv, median, report, runBench, sql, timed, uniqueNames } from "./support";

const RUNS = Number(process.env.BENCH_RUNS ?? 3);
const DOCUMENTS = Number(process.env.BENCH_DOCUMENTS ?? 200_000);
const EMBEDDINGS = Number(process.env.BENCH_EMBEDDINGS ?? 20_000);

// A server of its own: pg_dumpall dumps every database on it, so it must hold only these three.
runBench(async (server) => {
  const names = uniqueNames("backup");
  const work = fs.mkdtempSync(path.join(os.tmpdir(), "aimig-bench-"));
  const env = envFor(server, names, { MIGRATION_BACKUP_DIR: path.join(work, "backups") });
  if (process.env.MIGRATION_BACKUP_COMPRESSION) env.MIGRATION_BACKUP_COMPRESSION = process.env.MIGRATION_BACKUP_COMPRESSION;
  try {
    timed(process.execPath, [CLI, "migration:run"], env);
    const seeded = Date.now();
    await sql(server, names.authdb, `INSERT INTO users (email, password_hash) SELECT 'user' || g || '@example.com', md5(g::text) FROM generate_series(1, 20000) g`);
    await sql(server, names.apidb, `INSERT INTO profiles (user_id, name, address) SELECT uuid_generate_v4(), 'name ' || g, 'street ' || g FROM generate_series(1, 20000) g`);
    await sql(server, names.admindb, `
      INSERT INTO knowledge_bases (name, user_id) SELECT 'kb ' || g, uuid_generate_v4() FROM generate_series(1, 100) g;
      INSERT INTO documents (knowledge_base_id, filename, original_filename, file_path, mime_type, file_size, text_content, tags)
        SELECT (SELECT id FROM knowledge_bases ORDER BY id OFFSET (g % 100) LIMIT 1), 'doc' || g || '.pdf', 'Document ' || g || '.pdf',
               '/data/' || g, 'application/pdf', 1000 + g, repeat('lorem ipsum ' || g || ' ', 20), ARRAY['tag' || (g % 10)]
          FROM generate_series(1, ${DOCUMENTS}) g;
      INSERT INTO langchain_pg_embedding (collection_id, embedding, document, document_id, chunk_index)
        SELECT (SELECT uuid FROM langchain_pg_collection LIMIT 1),
               (SELECT array_agg(((g * 7 + i) % 1000)::real / 1000) FROM generate_series(1, 768) i)::vector,
               'chunk ' || g, NULL, g % 8
          FROM generate_series(1, ${EMBEDDINGS}) g;`);
    await sql(server, names.admindb, `VACUUM ANALYZE`);
    console.log(`seeded ${DOCUMENTS} documents, ${EMBEDDINGS} embeddings in ${((Date.now() - seeded) / 1000).toFixed(1)} s`);

    const pgDumpall = clientTool("pg_dumpall");
    const pgEnv = libpqEnv(server);
    const config = loadConfig(env);
    // The facts a deploy reads under its lock; the backup step itself is what is timed.
    const requests = DATABASES.map((db) => ({ db, target: config.targets[db], serverVersion: "15", serverMajor: 15, applied: [] }));
    const ours: number[] = [];
    const command: number[] = [];
    const theirs: number[] = [];
    let sizes = "";
    for (let i = 0; i < RUNS; i++) {
      // The deploy's backup step itself (what a deploy waits for), then the whole db:backup command.
      const started = process.hrtime.bigint();
      const { manifest } = await backupDatabases(requests, { backupDir: env.MIGRATION_BACKUP_DIR!, runId: `bench-${i}`, reason: "bench", compression: config.backupCompression });
      ours.push(Number(process.hrtime.bigint() - started) / 1e9);
      if (manifest.databases.length !== 3) throw new Error("not every database was backed up");
      command.push(timed(process.execPath, [CLI, "db:backup"], env));
      const out = path.join(work, `all-${i}.sql`);
      theirs.push(timed(pgDumpall, ["-f", out], pgEnv));
      const last = path.join(work, "backups", `bench-${i}`);
      const ourBytes = fs.readdirSync(last).reduce((n, f) => n + fs.statSync(path.join(last, f)).size, 0);
      sizes = `archives ${(ourBytes / 1048576).toFixed(0)} MiB vs pg_dumpall ${(fs.statSync(out).size / 1048576).toFixed(0)} MiB`;
      fs.rmSync(out);
    }
    console.log(sizes);
    const o = median(ours);
    const t = median(theirs);
    report(`backup step, 3 databases, every archive verified, median of ${RUNS}`, o, t, "pg_dumpall", { maxRatio: 1 });
    console.log(`(the whole db:backup command, process start included: ${median(command).toFixed(3)} s, ratio ${(median(command) / t).toFixed(2)})`);
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
}, { ownServer: true });
