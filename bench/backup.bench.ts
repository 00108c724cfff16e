// The whole `db:backup` command (process start, deploy locks, pg_dump of the three databases in
// parallel with their big tables' binary COPY files, every archive verified with pg_restore --list
// and checksummed, every data file checked and checksummed) against pg_dumpall of
// the same server, on two data sets: text-heavy (200k profiles, 200k documents) and vector-heavy
// (20k+ random 768-dimension embeddings: real embeddings do not compress). Interleaved, median of
// BENCH_RUNS (3), one server of its own holding only these three databases.
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { backupDatabases } from "../src/backup/backup";
import { loadConfig } from "../src/config";
import { DATABASES, DbName } from "../src/databases";
import { CLI, clientTool, dropAll, envFor, libpqEnv, median, report, runBench, sql, timed, uniqueNames } from "./support";
import type { TestServer } from "../test/support/server";

const RUNS = Number(process.env.BENCH_RUNS ?? 3);
const PROFILES = Number(process.env.BENCH_PROFILES ?? 200_000);
const EMBEDDINGS = Number(process.env.BENCH_EMBEDDINGS ?? 20_000);

const DATA_SETS: Array<{ name: string; seed: (server: TestServer, names: Record<DbName, string>) => Promise<void> }> = [
  {
    name: `text-heavy (${PROFILES / 1000}k profiles, ${PROFILES / 1000}k documents)`,
    seed: async (server, names) => {
      await sql(server, names.authdb, `INSERT INTO users (email, password_hash) SELECT 'user' || g || '@example.com', md5(g::text) FROM generate_series(1, 20000) g`);
      await sql(server, names.apidb, `INSERT INTO profiles (user_id, name, first_name, last_name, address, phone)
        SELECT uuid_generate_v4(), 'name ' || g, 'First' || g, 'Last' || (g % 977), g || ' Chome, Minato-ku, Tokyo ' || md5(g::text), '+81-3-' || lpad(g::text, 8, '0')
          FROM generate_series(1, ${PROFILES}) g`);
      await sql(server, names.admindb, `
        INSERT INTO knowledge_bases (name, user_id) SELECT 'kb ' || g, uuid_generate_v4() FROM generate_series(1, 100) g;
        INSERT INTO documents (knowledge_base_id, filename, original_filename, file_path, mime_type, file_size, text_content, tags)
          SELECT (SELECT id FROM knowledge_bases ORDER BY id OFFSET (g % 100) LIMIT 1), 'doc' || g || '.pdf', 'Document ' || g || '.pdf',
                 '/data/' || g, 'application/pdf', 1000 + g, repeat('lorem ipsum ' || g || ' ', 20), ARRAY['tag' || (g % 10)]
            FROM generate_series(1, ${PROFILES}) g;`);
    },
  },
  {
    name: `vector-heavy (${EMBEDDINGS / 1000}k embeddings of 768 random dimensions)`,
    seed: async (server, names) => {
      await sql(server, names.authdb, `INSERT INTO users (email, password_hash) SELECT 'user' || g || '@example.com', md5(g::text) FROM generate_series(1, 20000) g`);
      await sql(server, names.admindb, `
        INSERT INTO langchain_pg_embedding (collection_id, embedding, document, document_id, chunk_index)
          SELECT (SELECT uuid FROM langchain_pg_collection LIMIT 1), (SELECT array_agg(random()::real) FROM generate_series(1, 768 + 0 * g) i)::vector,
                 'chunk ' || g, NULL, g % 8
            FROM generate_series(1, ${EMBEDDINGS}) g`);
    },
  },
];

runBench(async (server) => {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), "aimig-bench-"));
  const lines: string[] = [];
  try {
    for (const set of DATA_SETS) {
      const names = uniqueNames("backup");
      const env = envFor(server, names, { MIGRATION_BACKUP_DIR: path.join(work, "backups") });
      if (process.env.MIGRATION_BACKUP_COMPRESSION) env.MIGRATION_BACKUP_COMPRESSION = process.env.MIGRATION_BACKUP_COMPRESSION;
      try {
        timed(process.execPath, [CLI, "migration:run"], env);
        const seeded = Date.now();
        await set.seed(server, names);
        for (const db of DATABASES) await sql(server, names[db], "VACUUM ANALYZE");
        console.log(`${set.name}: seeded in ${((Date.now() - seeded) / 1000).toFixed(1)} s`);
        const config = loadConfig(env);
        const requests = DATABASES.map((db) => ({ db, target: config.targets[db], serverVersion: "15", serverMajor: 15, applied: [] }));
        const step: number[] = [];
        const command: number[] = [];
        const theirs: number[] = [];
        let sizes = "";
        for (let i = 0; i < RUNS; i++) {
          // The backup step alone (what a deploy waits for), the whole command, then the baseline.
          const started = process.hrtime.bigint();
          const { manifest } = await backupDatabases(requests, { backupDir: env.MIGRATION_BACKUP_DIR!, runId: `bench-${set.name.slice(0, 4)}-${i}`, reason: "bench", compression: config.backupCompression });
          step.push(Number(process.hrtime.bigint() - started) / 1e9);
          if (manifest.databases.length !== 3) throw new Error("not every database was backed up");
          command.push(timed(process.execPath, [CLI, "db:backup"], env));
          const out = path.join(work, `all-${i}.sql`);
          theirs.push(timed(pgDumpall(), ["-f", out], libpqEnv(server)));
          const dumped = fs.readdirSync(path.join(work, "backups")).sort().pop()!;
          const dir = path.join(work, "backups", dumped);
          const ourBytes = fs.readdirSync(dir).reduce((n, f) => n + fs.statSync(path.join(dir, f)).size, 0);
          const dataFiles = fs.readdirSync(dir).filter((f) => f.endsWith(".pgcopy")).length;
          sizes = `archives and ${dataFiles} data files ${(ourBytes / 1048576).toFixed(0)} MiB (-Z${config.backupCompression}) vs pg_dumpall ${(fs.statSync(out).size / 1048576).toFixed(0)} MiB`;
          fs.rmSync(out);
        }
        const t = median(theirs);
        console.log(`${set.name}: ${sizes}; backup step alone ${median(step).toFixed(3)} s (ratio ${(median(step) / t).toFixed(2)})`);
        report(`${set.name}: whole db:backup command, every archive verified, median of ${RUNS}`, median(command), t, "pg_dumpall", { maxRatio: 0.7 });
        lines.push(`${set.name}: db:backup ${median(command).toFixed(2)} s vs pg_dumpall ${t.toFixed(2)} s = ${(median(command) / t).toFixed(2)}`);
      } finally {
        await dropAll(server, names);
        fs.rmSync(path.join(work, "backups"), { recursive: true, force: true });
      }
    }
    console.log(`summary:\n  ${lines.join("\n  ")}`);
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
}, { ownServer: true });

const pgDumpall = () => clientTool("pg_dumpall");
