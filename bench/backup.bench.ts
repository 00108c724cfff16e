// The deploy's backup step (db:backup: pg_dump -Fc of the three databases, each archive verified
// with pg_restore --list and checksummed) against pg_dumpall of the same server, on a seeded
// dataset: 200k documents and 20k embeddings (vector(768)) in admindb, users and profiles too.
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { backupDatabases } from "../src/backup/backup";
import { loadConfig } from "../src/config";
import { DATABASES } from "../src/databases";
import { clientTool, CLI, envFor, libpqEnv, median, report, runBench, seedLoad, timed, uniqueNames } from "./support";

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
    await seedLoad(server, names, DOCUMENTS, EMBEDDINGS);

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
