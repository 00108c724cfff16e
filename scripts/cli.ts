// The command line behind the npm scripts: parses flags, loads the configuration, calls one core
// command, prints its report. Errors are one line on stderr; exit 0 done, 1 failed, 2 bad usage.
import "reflect-metadata";
import "../src/quiet-warnings";
import { parseArgs } from "util";
import { Config, describeServer, migrationsRootFrom, isProduction, isUnconfigured, loadConfig, readDotEnv, scrubSecrets } from "../src/config";
import { DATABASES, DbName, isDbName } from "../src/databases";
import { embeddedUrl, startEmbedded, EMBEDDED_ROOT } from "../src/postgres/embedded";
import { EXIT, MigrationError, UsageError } from "../src/errors";
import { destroyCluster, stopCluster } from "../src/postgres/local-cluster";
import { DEFAULT_TIMEOUTS, parseDuration, Timeouts } from "../src/runner/migrator";
import { runMigrations, RunOptions } from "../src/commands/run";
import { backupCommand } from "../src/commands/backup";
import { checkDatabases } from "../src/commands/check";
import { baselineDatabases } from "../src/commands/baseline";
import { repairChecksums } from "../src/commands/repair";
import { restoreBackup } from "../src/backup/restore";
import { revertMigrations, RevertTarget } from "../src/commands/revert";
import { showMigrations } from "../src/commands/show";
import { generateMigrations } from "../src/commands/generate";
import { createMigration } from "../src/commands/create";
import * as print from "./print";

const FLAGS = {
  db: { type: "string", multiple: true },
  to: { type: "string" },
  steps: { type: "string" },
  "dry-run": { type: "boolean" },
  "no-backup": { type: "boolean" },
  json: { type: "boolean" },
  check: { type: "boolean" },
  verbose: { type: "boolean" },
  into: { type: "string" },
  "shadow-url": { type: "string" },
  keep: { type: "string" },
} as const;

type Flags = { [K in keyof typeof FLAGS]?: (typeof FLAGS)[K] extends { multiple: true } ? string[] : (typeof FLAGS)[K] extends { type: "boolean" } ? boolean : string };

function parse(argv: string[]): { flags: Flags; positionals: string[] } {
  try {
    const { values, positionals } = parseArgs({ args: argv, options: FLAGS, allowPositionals: true, strict: true });
    return { flags: values as Flags, positionals };
  } catch (error) {
    throw new UsageError((error as Error).message.split("\n")[0].replace(/^TypeError \[\w+\]: /, ""));
  }
}

function selectedDbs(flags: Flags): DbName[] {
  if (!flags.db?.length) return [...DATABASES];
  for (const db of flags.db) if (!isDbName(db)) throw new UsageError(`unknown database "${db}" (expected one of ${DATABASES.join(", ")})`);
  return DATABASES.filter((d) => flags.db!.includes(d));
}

function oneDb(flags: Flags, command: string): DbName {
  const dbs = selectedDbs(flags);
  if (!flags.db?.length || dbs.length !== 1) throw new UsageError(`${command} needs exactly one --db <${DATABASES.join("|")}>`);
  return dbs[0];
}

function timeouts(): Timeouts {
  const env = process.env;
  try {
    return {
      lockTimeout: parseDuration(env.MIGRATION_LOCK_TIMEOUT ?? DEFAULT_TIMEOUTS.lockTimeout, "MIGRATION_LOCK_TIMEOUT"),
      statementTimeout: parseDuration(env.MIGRATION_STATEMENT_TIMEOUT ?? DEFAULT_TIMEOUTS.statementTimeout, "MIGRATION_STATEMENT_TIMEOUT"),
    };
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
}

function backupKeep(raw: string | undefined): number | undefined {
  if (raw === undefined || raw === "") return undefined;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < 1) throw new UsageError("MIGRATION_BACKUP_KEEP / --keep must be a whole number of runs, at least 1");
  return value;
}

/** Ctrl-C (or SIGTERM) asks the run to stop after the current migration and undo what it did; twice, exit now. */
function interruptSignal(json: boolean): AbortSignal {
  const controller = new AbortController();
  const onSignal = (signal: NodeJS.Signals) => {
    if (controller.signal.aborted) process.exit(130);
    controller.abort();
    if (!json) console.error(`${signal}: stopping after the current step and undoing this run (again to exit now)`);
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  return controller.signal;
}

function deployOptions(flags: Flags, json: boolean): DeployFlags {
  const skipBackup = !!flags["no-backup"];
  if (skipBackup) console.error("warning: --no-backup: no backup is taken; a failed run can only be undone by its down migrations");
  return {
    timeouts: timeouts(),
    lockTimeoutMs: deployLockWaitMs(),
    backup: !skipBackup,
    backupKeep: backupKeep(flags.keep ?? process.env.MIGRATION_BACKUP_KEEP),
    progress: json ? undefined : print.progress,
    signal: interruptSignal(json),
  };
}

type DeployFlags = Omit<RunOptions, "dbs" | "to" | "dryRun">;

/** --shadow-url or MIGRATION_SHADOW_URL; a password belongs in the environment, never in arguments. */
function shadowUrl(flags: Flags): string | undefined {
  const fromFlag = flags["shadow-url"];
  if (fromFlag) {
    let password = "";
    try {
      password = new URL(fromFlag).password;
    } catch {
      throw new UsageError("--shadow-url is not a valid URL (expected postgres://user@host:5432/scratch)");
    }
    if (password) throw new UsageError("--shadow-url must not carry a password (other users can read process arguments): set MIGRATION_SHADOW_URL, or PGPASSWORD");
    return fromFlag;
  }
  return process.env.MIGRATION_SHADOW_URL || undefined;
}

function deployLockWaitMs(): number {
  const raw = process.env.MIGRATION_LOCK_WAIT_MS;
  const value = raw ? Number(raw) : 120_000;
  if (!Number.isInteger(value) || value < 0) throw new UsageError("MIGRATION_LOCK_WAIT_MS must be a whole number of milliseconds");
  return value;
}

/** The configuration, starting the embedded server first when nothing is configured. */
async function configure(json: boolean): Promise<Config> {
  let created = false;
  if (isUnconfigured(process.env) && !isProduction(process.env)) {
    loadConfig(process.env, { embeddedUrl: () => "postgres://check@127.0.0.1:1/postgres" }); // settings checked before anything starts
    try {
      ({ created } = await startEmbedded());
    } catch (error) {
      throw new UsageError(`no database configured, and the embedded PostgreSQL could not start: ${(error as Error).message.split("\n")[0]}`);
    }
  }
  const config = loadConfig(process.env, { embeddedUrl });
  if (!json) console.log(describeServer(config) + (created ? " (created now)" : ""));
  return config;
}

async function main(argv: string[]): Promise<number> {
  readDotEnv(); // first: every setting below may come from .env
  const [command, ...rest] = argv;
  const { flags, positionals } = parse(rest);
  const json = !!flags.json;
  const emit = (report: unknown, human: () => void) => (json ? console.log(JSON.stringify(report, null, 2)) : human());

  switch (command) {
    case "migration:run": {
      const options = { ...deployOptions(flags, json), dbs: selectedDbs(flags), to: flags.to, dryRun: flags["dry-run"] };
      const config = await configure(json);
      const report = await runMigrations(config, options);
      emit(report, () => print.run(report));
      return report.status === "failed" ? EXIT.failed : EXIT.ok;
    }
    case "migration:revert": {
      let target: RevertTarget = { kind: "last-run" };
      if (flags.db?.length || flags.steps || flags.to) {
        const db = oneDb(flags, "migration:revert with --steps or --to");
        if (flags.steps && flags.to) throw new UsageError("give --steps or --to, not both");
        if (flags.to) target = { kind: "to", db, to: flags.to };
        else {
          const steps = Number(flags.steps ?? 1);
          if (!Number.isInteger(steps) || steps < 1) throw new UsageError("--steps must be a positive whole number");
          target = { kind: "steps", db, steps };
        }
      }
      const options = { ...deployOptions(flags, json), target, dryRun: flags["dry-run"] };
      const config = await configure(json);
      const report = await revertMigrations(config, options);
      emit(report, () => print.revert(report));
      return report.status === "failed" ? EXIT.failed : EXIT.ok;
    }
    case "migration:show": {
      const dbs = selectedDbs(flags);
      const config = await configure(json);
      const report = await showMigrations(config, dbs);
      emit(report, () => print.show(report));
      return EXIT.ok;
    }
    case "migration:check": {
      const dbs = selectedDbs(flags);
      const options = { shadowUrl: shadowUrl(flags) };
      const config = await configure(json);
      const report = await checkDatabases(config, dbs, options);
      emit(report, () => print.check(report));
      return report.ok ? EXIT.ok : EXIT.failed;
    }
    case "migration:baseline": {
      const dbs = selectedDbs(flags);
      const options = { shadowUrl: shadowUrl(flags), lockTimeoutMs: deployLockWaitMs() };
      const config = await configure(json);
      const report = await baselineDatabases(config, dbs, options);
      emit(report, () => print.baseline(report));
      return report.ok ? EXIT.ok : EXIT.failed;
    }
    case "migration:repair": {
      const dbs = selectedDbs(flags);
      const lockWait = deployLockWaitMs();
      const config = await configure(json);
      const report = await repairChecksums(config, dbs, lockWait);
      emit(report, () => print.repair(report));
      return EXIT.ok;
    }
    case "migration:generate": {
      const dbs = selectedDbs(flags);
      const config = await configure(json);
      const report = await generateMigrations(config, { name: positionals[0], dbs, check: flags.check });
      emit(report, () => print.generate(report, !!flags.check));
      return flags.check && report.databases.some((d) => d.changed) ? EXIT.failed : EXIT.ok;
    }
    case "migration:create": {
      const db = oneDb(flags, "migration:create");
      const file = createMigration(migrationsRootFrom(process.env), positionals[0], db);
      emit({ command: "create", db, file }, () => console.log(`${db}: created ${file}`));
      return EXIT.ok;
    }
    case "db:backup": {
      const dbs = selectedDbs(flags);
      const keep = backupKeep(flags.keep ?? process.env.MIGRATION_BACKUP_KEEP);
      const lockWait = deployLockWaitMs();
      const config = await configure(json);
      const report = await backupCommand(config, dbs, keep, json ? undefined : print.progress, lockWait);
      emit(report, () => print.backup(report));
      return EXIT.ok;
    }
    case "db:restore": {
      if (!positionals[0]) throw new UsageError("db:restore needs a backup: a run id or a <db>.dump file (npm run db:restore -- <run id> [--db <db>] [--into <name>])");
      const db = flags.db?.length ? oneDb(flags, "db:restore") : undefined;
      const lockTimeoutMs = deployLockWaitMs();
      const config = await configure(json);
      const report = await restoreBackup(config, { backup: positionals[0], db, into: flags.into, lockTimeoutMs });
      emit(report, () => print.restore(report));
      return EXIT.ok;
    }
    case "db:up": {
      const { created, port } = await startEmbedded();
      console.log(`embedded PostgreSQL ${created ? "created and " : ""}running on 127.0.0.1:${port} (data in .pgdata/)`);
      return EXIT.ok;
    }
    case "db:down":
      stopCluster(EMBEDDED_ROOT);
      console.log("embedded PostgreSQL stopped");
      return EXIT.ok;
    case "db:reset": {
      destroyCluster(EMBEDDED_ROOT);
      const { port } = await startEmbedded();
      console.log(`embedded PostgreSQL recreated, empty, on 127.0.0.1:${port}`);
      return EXIT.ok;
    }
    default:
      throw new UsageError(`unknown command "${command ?? ""}"`);
  }
}

function passwordsInEnv(): string[] {
  const out: string[] = [];
  for (const key of ["DATABASE_URL", "AUTHDB_URL", "APIDB_URL", "ADMINDB_URL", "MIGRATION_SHADOW_URL", "PGPASSWORD"]) {
    const value = process.env[key];
    if (!value) continue;
    if (key === "PGPASSWORD") out.push(value);
    else {
      try {
        const p = decodeURIComponent(new URL(value).password);
        if (p) out.push(p, encodeURIComponent(p));
      } catch {
        /* a malformed URL is reported without its text */
      }
    }
  }
  return out;
}

const verbose = process.argv.includes("--verbose");
main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    const known = error instanceof MigrationError;
    const line = known ? error.line : String((error as Error)?.message ?? error).split("\n")[0];
    console.error(`error: ${scrubSecrets(line, passwordsInEnv())}`);
    if (verbose && !known) console.error(scrubSecrets(String((error as Error)?.stack), passwordsInEnv()));
    process.exitCode = known ? error.exitCode : EXIT.failed;
  },
);
