// A long history: 1,000 and 10,000 trivial pending migrations (one CREATE TABLE each) in apidb,
// deployed by one `migration:run --no-backup` (all three databases, as a deploy runs it), against the
// plain TypeORM CLI's `migration:run` (`-t each`: a transaction per migration, like ours) on the same
// files, loaded by TypeORM itself (a glob, compiled by ts-node). Wall time, peak memory (max RSS of
// the process, /usr/bin/time), ms per migration; then `migration:show` with all of them applied.
import { spawnSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { CLI, dropAll, envFor, ROOT, runBench, sql, timed, uniqueNames, urlFor } from "./support";

const SIZES = (process.env.BENCH_MANY_SIZES ?? "1000,10000").split(",").map((s) => Number(s.trim()));
if (SIZES.some((n) => !Number.isInteger(n) || n < 1)) {
  console.error(`error: BENCH_MANY_SIZES takes counts like 1000,10000 (got ${process.env.BENCH_MANY_SIZES})`);
  process.exit(2);
}

const TIME = "/usr/bin/time";

/** The project's migrations plus `n` trivial ones in apidb, in a folder of their own. */
function writeMigrations(n: number): string {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), `aimig-many-${n}-`));
  fs.cpSync(path.join(ROOT, "src", "migrations"), root, { recursive: true });
  for (let i = 1; i <= n; i++) {
    const timestamp = 1800000000000 + i * 1000;
    const name = `Many${String(i).padStart(5, "0")}`;
    fs.writeFileSync(path.join(root, "apidb", `${timestamp}-${name}.ts`), `import { MigrationInterface, QueryRunner } from "typeorm";

export class ${name}${timestamp} implements MigrationInterface {
    public async up(queryRunner: QueryRunner): Promise<void> {
        await queryRunner.query(\`CREATE TABLE "many_${i}" ("id" integer PRIMARY KEY)\`);
    }

    public async down(queryRunner: QueryRunner): Promise<void> {
        await queryRunner.query(\`DROP TABLE "many_${i}"\`);
    }
}
`);
  }
  // What a team using only TypeORM has: a DataSource with a glob, the files compiled by ts-node.
  fs.writeFileSync(path.join(root, "typeorm-apidb.ts"), `import { DataSource } from ${JSON.stringify(path.join(ROOT, "node_modules", "typeorm"))};
export default new DataSource({ type: "postgres", url: process.env.APIDB_URL, migrations: [${JSON.stringify(path.join(root, "apidb", "*.ts"))}] });
`);
  return root;
}

interface Measured {
  seconds: number;
  /** Peak resident memory of the process, MB (undefined without /usr/bin/time). */
  peakMb?: number;
}

/** Runs a command to the end; wall time and, through /usr/bin/time, its peak RSS. Throws if it fails. */
function measured(cmd: string, cmdArgs: string[], env: NodeJS.ProcessEnv): Measured {
  if (!fs.existsSync(TIME)) return { seconds: timed(cmd, cmdArgs, env) };
  const started = process.hrtime.bigint();
  const r = spawnSync(TIME, ["-f", "peak-kb %M", cmd, ...cmdArgs], { env, cwd: ROOT, encoding: "utf8", maxBuffer: 1 << 28 });
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  if (r.status !== 0) throw new Error(`${path.basename(cmdArgs[0] ?? cmd)} ${cmdArgs.slice(1).join(" ")} failed: ${(r.stderr || r.stdout).trim().split("\n").slice(-3).join(" | ")}`);
  const kb = /peak-kb (\d+)/.exec(r.stderr)?.[1];
  return { seconds, peakMb: kb ? Number(kb) / 1024 : undefined };
}

const mb = (m: Measured) => (m.peakMb === undefined ? "n/a" : `${m.peakMb.toFixed(0)} MB`);
const perMigration = (m: Measured, n: number) => `${((m.seconds * 1000) / n).toFixed(2)} ms/migration`;
// The machine may be shared: the load average printed with each result says how much it was.

runBench(async (server) => {
  const typeormCli = require.resolve("typeorm/cli-ts-node-commonjs");
  console.log(`ours: node bin/migrate.js migration:run --no-backup (authdb, apidb, admindb); TypeORM CLI: typeorm-ts-node-commonjs migration:run -t each -d <DataSource with a glob over apidb/*.ts>`);
  for (const n of SIZES) {
    const root = writeMigrations(n);
    const ours = uniqueNames(`many${n}`);
    const theirs = uniqueNames(`tom${n}`);
    try {
      const env = envFor(server, ours, { MIGRATIONS_DIR: root });
      const run = measured(process.execPath, [CLI, "migration:run", "--no-backup"], env);
      const show = measured(process.execPath, [CLI, "migration:show"], env);
      await sql(server, "postgres", `CREATE DATABASE "${theirs.apidb}"`);
      const baseline = measured(process.execPath, [typeormCli, "migration:run", "-t", "each", "-d", path.join(root, "typeorm-apidb.ts")], { ...envFor(server, theirs), APIDB_URL: urlFor(server, theirs.apidb) });
      const ratio = run.seconds / baseline.seconds;
      const met = run.seconds <= (n >= 10000 ? 15 : Infinity) && (run.peakMb ?? 0) <= (n >= 10000 ? 400 : Infinity) && show.seconds <= 1;
      const load = os.loadavg().map((l) => l.toFixed(1)).join(" ");
      console.log(`${n} migrations (load average ${load} on ${os.cpus().length} cores): migration:run ours ${run.seconds.toFixed(1)} s, ${mb(run)}, ${perMigration(run, n)}; TypeORM CLI ${baseline.seconds.toFixed(1)} s, ${mb(baseline)}, ${perMigration(baseline, n)}; ratio ${ratio.toFixed(2)}`);
      console.log(`${n} migrations: migration:show ours ${show.seconds.toFixed(2)} s, ${mb(show)}${n >= 10000 ? ` (targets: run <= 15 s and <= 400 MB, show <= 1 s: ${met ? "met" : "MISSED"})` : ""}`);
    } finally {
      await dropAll(server, ours);
      await dropAll(server, theirs);
      fs.rmSync(root, { recursive: true, force: true });
    }
  }
});
