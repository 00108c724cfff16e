// The copy step of migration:rehearse (pg_dump -Fd -j -Z0 into a private temp directory, then
// pg_restore -j --no-owner into the scratch database, then VACUUM (ANALYZE)) against copying by hand with
// `pg_dump -Fc | pg_restore -d <scratch>`, on the seeded dataset of the other benchmarks: 200k
// documents and 20k embeddings (vector(768)) in admindb, users and profiles too. Both copy the
// three databases into fresh scratch databases (created before the clock starts, dropped after),
// interleaved, in the same run on the same server. Also prints the copy rate the estimate uses.
import { Client } from "pg";
import { loadConfig } from "../src/config";
import { DATABASES, DbName } from "../src/databases";
import { ASSUMED_COPY, assumedRate, COPY_JOBS, dumpAndRestore, estimateCopyMs, sizeText, vacuumAnalyze } from "../src/rehearsal/copy";
import { findPgTool } from "../src/postgres/client-programs";
import { CLI, envFor, libpqEnv, median, report, runBench, seedLoad, sql, timed, uniqueNames, urlFor } from "./support";
import type { TestServer } from "../test/support/server";

const RUNS = Number(process.env.BENCH_RUNS ?? 3);
const DOCUMENTS = Number(process.env.BENCH_DOCUMENTS ?? 200_000);
const EMBEDDINGS = Number(process.env.BENCH_EMBEDDINGS ?? 20_000);

async function sizeOf(server: TestServer, database: string): Promise<number> {
  const c = new Client({ connectionString: urlFor(server, "postgres") });
  await c.connect();
  try {
    return Number((await c.query(`SELECT pg_database_size($1)::int8 AS n`, [database])).rows[0].n);
  } finally {
    await c.end();
  }
}

runBench(async (server) => {
  const names = uniqueNames("rehearse");
  const env = envFor(server, names);
  try {
    timed(process.execPath, [CLI, "migration:run"], env);
    await seedLoad(server, names, DOCUMENTS, EMBEDDINGS);

    const config = loadConfig(env);
    const sizes = Object.fromEntries(await Promise.all(DATABASES.map(async (db) => [db, await sizeOf(server, names[db])] as const))) as Record<DbName, number>;
    console.log(`sizes: ${DATABASES.map((db) => `${db} ${sizeText(sizes[db])}`).join(", ")}; ${COPY_JOBS} jobs`);
    const pgDump = findPgTool("pg_dump", 0);
    const pgRestore = findPgTool("pg_restore", 0);
    const scratch = (db: DbName, side: string, i: number) => `${names[db]}_copy_${side}_${i}`;
    const ours: number[] = [];
    const oursCopy: number[] = [];
    const theirs: number[] = [];
    const perDb: Record<DbName, number[]> = { authdb: [], apidb: [], admindb: [] };
    for (let i = 0; i < RUNS; i++) {
      for (const db of DATABASES) {
        await sql(server, "postgres", `CREATE DATABASE "${scratch(db, "ours", i)}" TEMPLATE template0`);
        await sql(server, "postgres", `CREATE DATABASE "${scratch(db, "pipe", i)}" TEMPLATE template0`);
      }
      try {
        let total = 0;
        let copyOnly = 0;
        for (const db of DATABASES) {
          const name = scratch(db, "ours", i);
          const target = { ...config.targets[db], url: urlFor(server, name), database: name, display: "" };
          const options = { db, runId: `20200101T000000Z-be0${i}`, jobs: COPY_JOBS, connectTimeoutMs: 10_000 };
          // copyIntoScratch's two parts, timed apart: the copy, then VACUUM (ANALYZE), which the pipe does not do.
          const started = process.hrtime.bigint();
          await dumpAndRestore({ kind: "pg_dump", target: config.targets[db] }, target, options);
          const copied = process.hrtime.bigint();
          await vacuumAnalyze(target, options);
          const seconds = Number(process.hrtime.bigint() - started) / 1e9;
          perDb[db].push(seconds);
          total += seconds;
          copyOnly += Number(copied - started) / 1e9;
        }
        ours.push(total);
        oursCopy.push(copyOnly);
        let pipe = 0;
        for (const db of DATABASES) {
          // By hand: the archive streamed from pg_dump straight into pg_restore (no parallel restore without a seekable file).
          pipe += timed("/bin/bash", ["-o", "pipefail", "-c", `"${pgDump}" -Fc --no-password | "${pgRestore}" --no-owner --no-password --exit-on-error -d "${scratch(db, "pipe", i)}"`], libpqEnv(server, names[db]));
        }
        theirs.push(pipe);
      } finally {
        for (const db of DATABASES) {
          for (const side of ["ours", "pipe"]) await sql(server, "postgres", `DROP DATABASE IF EXISTS "${scratch(db, side, i)}" WITH (FORCE)`);
        }
      }
    }
    // How good the progress line's estimate is (assumed rate, before a run has measured its own).
    for (const db of DATABASES) {
      const s = median(perDb[db]);
      const rate = sizes[db] / 1048576 / Math.max(0.001, s - ASSUMED_COPY.fixedMs / 1000);
      const estimate = estimateCopyMs(sizes[db], assumedRate()) / 1000;
      console.log(`${db}: ${sizeText(sizes[db])} copied in ${s.toFixed(3)} s, estimated ${estimate.toFixed(1)} s (${assumedRate().basis})${sizes[db] >= 64 * 1048576 ? `; measured rate ${rate.toFixed(0)} MiB/s` : ""}`);
    }
    report(`rehearsal copy step, 3 databases (dump, restore, VACUUM ANALYZE), median of ${RUNS}`, median(ours), median(theirs), "pg_dump -Fc | pg_restore", { maxRatio: 1 });
    console.log(`(dump and restore alone, the same work as the pipe: ${median(oursCopy).toFixed(3)} s, ratio ${(median(oursCopy) / median(theirs)).toFixed(2)})`);
  } finally {
    for (const db of DATABASES) await sql(server, "postgres", `DROP DATABASE IF EXISTS "${names[db]}" WITH (FORCE)`).catch(() => undefined);
  }
});
