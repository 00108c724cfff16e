// A fresh migration:run of the three databases (backups on) against `psql -f` of the legacy
// init.sql, on the same server. Two flavours of ours: the run creates the databases (nothing to
// back up), and the databases exist empty beforehand (three pg_dumps taken and verified first).
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { DATABASES } from "../src/databases";
import { clientTool, CLI, dropAll, envFor, libpqEnv, median, report, ROOT, runBench, sql, timed, uniqueNames } from "./support";

const RUNS = Number(process.env.BENCH_RUNS ?? 5);
const LEGACY = fs.readFileSync(path.join(ROOT, "test", "fixtures", "legacy-init.sql"), "utf8");

runBench(async (server) => {
  const psql = clientTool("psql");
  const backupDir = fs.mkdtempSync(path.join(os.tmpdir(), "aimig-bench-backups-"));
  const psqlEnv = libpqEnv(server);
  const created: number[] = [];
  const precreated: number[] = [];
  const legacy: number[] = [];
  try {
    for (let i = 0; i < RUNS; i++) {
      const a = uniqueNames("fresh");
      created.push(timed(process.execPath, [CLI, "migration:run"], envFor(server, a, { MIGRATION_BACKUP_DIR: backupDir })));
      await dropAll(server, a);

      const b = uniqueNames("pre");
      for (const db of DATABASES) await sql(server, "postgres", `CREATE DATABASE "${b[db]}"`);
      precreated.push(timed(process.execPath, [CLI, "migration:run"], envFor(server, b, { MIGRATION_BACKUP_DIR: backupDir })));
      await dropAll(server, b);

      const c = uniqueNames("legacy");
      let script = LEGACY;
      for (const db of DATABASES) script = script.replace(`CREATE DATABASE ${db};`, `CREATE DATABASE ${c[db]};`).replace(`\\c ${db}\n`, `\\c ${c[db]}\n`);
      legacy.push(timed(psql, ["-q", "-v", "ON_ERROR_STOP=1", "-f", "-"], psqlEnv, script));
      await dropAll(server, c);
    }
    const base = median(legacy);
    report(`fresh migration:run, databases created by the run, median of ${RUNS}`, median(created), base, "psql -f init.sql", { maxRatio: 3 });
    report(`fresh migration:run, empty databases backed up first, median of ${RUNS}`, median(precreated), base, "psql -f init.sql", { maxRatio: 3 });
  } finally {
    fs.rmSync(backupDir, { recursive: true, force: true });
  }
});
