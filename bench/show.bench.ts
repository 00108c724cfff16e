// migration:show over the three databases (one process) against the TypeORM CLI's migration:show
// run once per data source (three processes), on the same migrated databases.
import { CLI, dropAll, envFor, median, report, runBench, timed, uniqueNames } from "./support";
import { DATABASES } from "../src/databases";

const RUNS = Number(process.env.BENCH_RUNS ?? 7);

runBench(async (server) => {
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
    report(`migration:show, 3 databases, median of ${RUNS}`, o, t, "TypeORM CLI x3", { maxRatio: 0.3, maxSeconds: 1.5 });
  } finally {
    await dropAll(server, names);
  }
});
