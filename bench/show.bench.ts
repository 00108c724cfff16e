// migration:show over the three databases (one process) against the TypeORM CLI's migration:show
// run once per data source (three processes), on the same migrated databases.
import { CLI, dropAll, envFor, median, report, startBenchServer, timed, uniqueNames } from "./support";
import { DATABASES } from "../src/databases";

const RUNS = Number(process.env.BENCH_RUNS ?? 7);

async function main(): Promise<void> {
  const server = await startBenchServer();
  const names = uniqueNames("benchshow");
  const env = envFor(server, names);
  try {
    timed(process.execPath, [CLI, "migration:run"], env);
    const typeormCli = require.resolve("typeorm/cli-ts-node-commonjs");
    const ours: number[] = [];
    const theirs: number[] = [];
    for (let i = 0; i < RUNS; i++) {
      ours.push(timed(process.execPath, [CLI, "migration:show"], env));
      theirs.push(DATABASES.reduce((sum, db) => sum + timed(process.execPath, [typeormCli, "migration:show", "-d", `src/data-sources/${db}.ts`], env), 0));
    }
    const o = median(ours);
    const t = median(theirs);
    report(`migration:show, 3 databases, median of ${RUNS}`, o, t, "TypeORM CLI x3", "ratio <= 0.30 and < 1.5 s", o / t <= 0.3 && o < 1.5);
  } finally {
    await dropAll(server, names);
    await server.stop();
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
