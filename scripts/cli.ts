// The command line behind the npm scripts: parses flags, loads the configuration, calls one core
// command, prints its report. Errors are one line on stderr; exit 0 done, 1 failed, 2 bad usage.
// Every setting and flag is checked before anything starts (the embedded server) or is written.
// Each command's module is loaded when that command runs (`await import`): db:backup starts
// without TypeORM, the SQL parser or the migration compiler.
import "reflect-metadata";
import "../src/quiet-warnings";
import "../src/postgres/load-pg";
import * as path from "path";
import { applyEnvironment, keepCount, npmBannerOnStdout, ConnectionSource, environmentsIn, Config, describeServer, lockWaitMsFrom, migrationsRootFrom, isProduction, isUnconfigured, loadConfig, scratchDatabaseUrl, scrubSecrets, testKillAt, timeoutsFrom } from "../src/config";
import { newRunId } from "../src/run-id";
import { hardStopReport, LiveRun } from "../src/deploy/hard-stop";
import { DATABASES, DbName, isDbName } from "../src/databases";
import { embeddedUrl, startEmbedded, EMBEDDED_ROOT } from "../src/postgres/embedded";
import { EXIT, MigrationError, UsageError } from "../src/errors";
import { clusterDataDir, destroyCluster, destroyClusterEverywhere, stopCluster } from "../src/postgres/local-cluster";
import { checkMigrationName } from "../src/schema/render-migration";
import type { RunOptions } from "../src/commands/run";
import type { RevertTarget } from "../src/commands/revert";
import { closestCommand, commandList, CommandDef, Flags, parseCommand } from "./command-line";
import * as print from "./print";
import * as printLint from "./print-lint";
import * as printRehearse from "./print-rehearse";
import type { Progress } from "../src/backup/backup";

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

const timeouts = () => timeoutsFrom(process.env);
const deployLockWaitMs = () => lockWaitMsFrom(process.env);

/**
 * Ctrl-C (or SIGTERM) asks the run to stop after the current migration and undo what it did;
 * twice, exit now, after saying what the run leaves (`hardStop`).
 */
function interruptSignal(json: boolean, doing = "stopping after the current step and undoing this run", hardStop?: () => void): AbortSignal {
  const controller = new AbortController();
  const onSignal = (signal: NodeJS.Signals) => {
    if (controller.signal.aborted) {
      hardStop?.();
      process.exit(130);
    }
    controller.abort();
    if (!json) console.error(`${signal}: ${doing} (again to exit now)`);
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  return controller.signal;
}

type DeployFlags = Omit<RunOptions, "dbs" | "to" | "dryRun">;

function deployOptions(flags: Flags, command: "run" | "complete" | "revert"): DeployFlags {
  const json = !!flags.json;
  const skipBackup = flags.backup === false;
  if (skipBackup) console.error("warning: --no-backup: no backup is taken; a failed run can only be undone by its down migrations");
  const runId = newRunId();
  const live: LiveRun = { runId, applied: [], maintenanceOn: false };
  return {
    runId,
    live,
    timeouts: timeouts(),
    lockTimeoutMs: deployLockWaitMs(),
    backup: !skipBackup,
    backupKeep: keepCount(flags.keep),
    progress: progressFor(json),
    onWait: print.waiting,
    onLockRetry: print.lockRetry,
    onDataLoss: print.dataLoss,
    onReconnect: print.reconnect,
    onEvent: json ? undefined : print.backfill,
    signal: interruptSignal(json, undefined, () => print.hardStop(hardStopReport(live, command), json)),
  };
}

/**
 * The progress reporter: printed unless --json. MIGRATION_TEST_KILL_AT=<n> (tests only) makes the
 * process SIGKILL itself at the n-th progress event, so a test can kill a deploy at exact points.
 */
function progressFor(json: boolean): Progress | undefined {
  const show = json ? undefined : print.progress;
  const killAt = testKillAt(process.env);
  if (!killAt) return show;
  let events = 0;
  return (event) => {
    show?.(event);
    if (++events === killAt) process.kill(process.pid, "SIGKILL");
  };
}

const shadowUrl = (flags: Flags) => scratchDatabaseUrl(process.env, flags.shadowUrl, "--shadow-url", "MIGRATION_SHADOW_URL");
const scratchUrl = (flags: Flags) => scratchDatabaseUrl(process.env, flags.scratchUrl, "--scratch-url", "MIGRATION_SCRATCH_URL");

/** Where this run's connection settings came from (set by `applyEnvironment` in main). */
let connectionSource: ConnectionSource = {};

/** The environments named by --env (several) or --all-envs (every .env.<name> file here). */
function environmentNames(flags: Flags): string[] {
  if (!flags.allEnvs) return flags.env ?? [];
  const names = environmentsIn(process.cwd());
  if (!names.length) throw new UsageError(`--all-envs: no .env.<name> file in ${process.cwd()}`);
  return [...new Set([...(flags.env ?? []), ...names])];
}

/**
 * migration:show --env a --env b: each environment's settings by the same rule as every command
 * (never the embedded server); a setting that is wrong is exit 2 before anything is read, an
 * environment that cannot be read is `unreachable` in its cells and exit 1 (0 with --allow-unreachable).
 */
async function showAcrossEnvironments(flags: Flags): Promise<number> {
  const dbs = selectedDbs(flags);
  const inputs = environmentNames(flags).map((name) => {
    const env: Record<string, string | undefined> = { ...process.env };
    const source = applyEnvironment(env, process.cwd(), name);
    try {
      const config = loadConfig(env);
      return { name, config, server: describeServer(config, { ...source, env: undefined }) };
    } catch (error) {
      throw error instanceof UsageError ? new UsageError(`--env ${name}: ${error.line}`) : error;
    }
  });
  const report = await (await import("../src/commands/environments")).showEnvironments(inputs, dbs);
  emit(flags, report, () => print.environments(report));
  return report.environments.some((e) => e.error) && !flags.allowUnreachable ? EXIT.failed : EXIT.ok;
}

/** The configuration, starting the embedded server first when nothing is configured. */
async function configure(flags: Flags): Promise<Config> {
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
  if (!flags.json) console.log(`${describeServer(config, connectionSource)}${created ? " (created now)" : ""}`);
  return config;
}

/** The JSON report with --json, else the human lines. */
function emit(flags: Flags, report: unknown, human: () => void): void {
  if (flags.json) console.log(JSON.stringify(report, null, 2));
  else human();
}

const COMMANDS: CommandDef[] = [
  {
    name: "migration:run",
    summary: "the deploy: apply pending migrations, each database backed up first",
    flags: { db: true, to: true, dryRun: true, backup: true, keep: true, unsafe: true, keepMaintenance: true, json: true },
    example: "npm run migration:run -- --db apidb --dry-run",
    async run(flags) {
      if (flags.unsafe) console.error("warning: --unsafe: migrations with lint findings they do not accept are deployed");
      const options = { ...deployOptions(flags, "run"), dbs: selectedDbs(flags), to: flags.to, dryRun: flags.dryRun, unsafe: flags.unsafe, keepMaintenance: flags.keepMaintenance };
      const report = await (await import("../src/commands/run")).runMigrations(await configure(flags), options);
      emit(flags, report, () => print.run(report));
      return report.status === "failed" ? EXIT.failed : EXIT.ok;
    },
  },
  {
    name: "migration:complete",
    summary: "second phase of expand/contract: apply pending contract migrations, after the new app is live",
    flags: { db: true, to: true, dryRun: true, backup: true, keep: true, force: true, keepMaintenance: true, json: true },
    example: "npm run migration:complete -- --db apidb",
    async run(flags) {
      if (flags.force) console.error("warning: --force: contracting even if a client wrote an old column within MIGRATION_CONTRACT_IDLE");
      const config = await configure(flags);
      const options = { ...deployOptions(flags, "complete"), dbs: selectedDbs(flags), to: flags.to, dryRun: flags.dryRun, keepMaintenance: flags.keepMaintenance, phase: "contract" as const, force: flags.force, contractIdle: config.evolve.contractIdle };
      const report = await (await import("../src/commands/run")).runMigrations(config, options);
      emit(flags, report, () => print.run(report));
      return report.status === "failed" ? EXIT.failed : EXIT.ok;
    },
  },
  {
    name: "migration:revert",
    summary: "undo the last deploy, or migrations of one database",
    flags: { db: "the one database to revert (with --steps or --to)", steps: true, to: "undo everything after <Name> in --db (base: everything)", dryRun: true, backup: true, keep: true, json: true },
    example: "npm run migration:revert -- --db apidb --steps 1",
    async run(flags) {
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
      const options = { ...deployOptions(flags, "revert"), target, dryRun: flags.dryRun };
      const report = await (await import("../src/commands/revert")).revertMigrations(await configure(flags), options);
      emit(flags, report, () => print.revert(report));
      return report.status === "failed" ? EXIT.failed : EXIT.ok;
    },
  },
  {
    name: "migration:show",
    summary: "per database: applied and pending migrations, the last run",
    flags: { db: true, allEnvs: true, allowUnreachable: true, json: true },
    example: "npm run migration:show -- --env staging --env production",
    async run(flags) {
      const dbs = selectedDbs(flags);
      const report = await (await import("../src/commands/show")).showMigrations(await configure(flags), dbs);
      emit(flags, report, () => print.show(report));
      return EXIT.ok;
    },
  },
  {
    name: "migration:lint",
    summary: "squawk over the SQL of pending (or all) migrations; exit 1 on a finding not accepted",
    flags: { db: true, all: true, json: true },
    example: "npm run migration:lint -- --db apidb --all",
    async run(flags) {
      const dbs = selectedDbs(flags);
      const report = await (await import("../src/commands/lint")).lintMigrations(await configure(flags), { dbs, all: !!flags.all });
      emit(flags, report, () => printLint.lint(report));
      return report.ok ? EXIT.ok : EXIT.failed;
    },
  },
  {
    name: "migration:rehearse",
    summary: "pending migrations up, down and up again on a scratch copy of each database: time, locks, rewrites, rows",
    flags: { db: "only this database (repeatable)", fromBackup: true, scratchUrl: true, json: true },
    example: "npm run migration:rehearse -- --db apidb --from-backup 20261125T130450Z-85e9",
    async run(flags) {
      const json = !!flags.json;
      const options = { dbs: selectedDbs(flags), fromBackup: flags.fromBackup, scratchUrl: scratchUrl(flags), timeouts: timeouts(), progress: progressFor(json), signal: interruptSignal(json, "stopping and dropping the scratch databases") };
      const report = await (await import("../src/commands/rehearse")).rehearseMigrations(await configure(flags), options);
      emit(flags, report, () => printRehearse.rehearse(report));
      return report.ok ? EXIT.ok : EXIT.failed;
    },
  },
  {
    name: "migration:check",
    summary: "entity, history and schema drift (pending listed, not drift); exit 1 on drift",
    flags: { db: true, shadowUrl: true, failOnPending: true, json: true },
    example: "npm run migration:check -- --db admindb",
    async run(flags) {
      const dbs = selectedDbs(flags);
      const options = { shadowUrl: shadowUrl(flags), failOnPending: !!flags.failOnPending };
      const report = await (await import("../src/commands/check")).checkDatabases(await configure(flags), dbs, options);
      emit(flags, report, () => print.check(report));
      return report.ok ? EXIT.ok : EXIT.failed;
    },
  },
  {
    name: "migration:baseline",
    summary: "adopt databases built by the legacy init.sql",
    flags: { db: true, shadowUrl: true, json: true },
    example: "npm run migration:baseline -- --db authdb",
    async run(flags) {
      const dbs = selectedDbs(flags);
      const options = { shadowUrl: shadowUrl(flags), lockTimeoutMs: deployLockWaitMs(), onWait: print.waiting };
      const report = await (await import("../src/commands/baseline")).baselineDatabases(await configure(flags), dbs, options);
      emit(flags, report, () => print.baseline(report));
      return report.ok ? EXIT.ok : EXIT.failed;
    },
  },
  {
    name: "migration:repair",
    summary: "accept deliberate edits of applied migrations (new checksums)",
    flags: { db: true, json: true },
    example: "npm run migration:repair -- --db apidb",
    async run(flags) {
      const dbs = selectedDbs(flags);
      const lockWait = deployLockWaitMs();
      const report = await (await import("../src/commands/repair")).repairChecksums(await configure(flags), dbs, lockWait, print.waiting);
      emit(flags, report, () => print.repair(report));
      return EXIT.ok;
    },
  },
  {
    name: "migration:squash",
    summary: "replace the applied migrations up to a name with one that builds the same schema",
    flags: { db: true, to: "squash up to <name> (default: the last applied)", shadowUrl: true, json: true },
    example: "npm run migration:squash -- --db apidb --to AddBirthDate",
    async run(flags) {
      const db = oneDb(flags, "migration:squash");
      const options = { to: flags.to, shadowUrl: shadowUrl(flags), lockTimeoutMs: deployLockWaitMs(), onWait: print.waiting };
      const report = await (await import("../src/commands/squash")).squashMigrations(await configure(flags), db, options);
      emit(flags, report, () => print.squash(report));
      return EXIT.ok;
    },
  },
  {
    name: "migration:generate",
    summary: "write a migration where the entities differ from the database",
    argument: { name: "[Name]", description: "the migration's name, PascalCase (not with --check)" },
    usage: "[<Name>] [options]",
    flags: { db: true, rename: true, drop: true, check: true, json: true },
    example: "npm run migration:generate -- RenamePhone --rename profiles.phone=phone_number",
    async run(flags, name) {
      const dbs = selectedDbs(flags);
      if (!flags.check) checkMigrationName(name);
      const report = await (await import("../src/commands/generate")).generateMigrations(await configure(flags), { name, dbs, check: flags.check, renames: flags.rename, drops: flags.drop });
      emit(flags, report, () => print.generate(report, !!flags.check));
      return flags.check && report.databases.some((d) => d.changed) ? EXIT.failed : EXIT.ok;
    },
  },
  {
    name: "migration:create",
    summary: "an empty migration for one database, to write by hand",
    argument: { name: "<Name>", description: "the migration's name, PascalCase" },
    usage: "<Name> --db <db> [options]",
    flags: { db: "the database it is for (required)", json: true },
    example: "npm run migration:create -- BackfillNames --db apidb",
    async run(flags, name) {
      const db = oneDb(flags, "migration:create");
      const file = (await import("../src/commands/create")).createMigration(migrationsRootFrom(process.env), name, db);
      emit(flags, { command: "create", db, file }, () => console.log(`${db}: created ${file}`));
      return EXIT.ok;
    },
  },
  {
    name: "db:backup",
    summary: "back up the databases (the deploy's backup step on its own)",
    flags: { db: true, keep: true, json: true },
    example: "npm run db:backup -- --db admindb --keep 10",
    async run(flags) {
      const dbs = selectedDbs(flags);
      const keep = keepCount(flags.keep);
      const json = !!flags.json;
      const options = { dbs, keep, progress: progressFor(json), lockTimeoutMs: deployLockWaitMs(), onWait: print.waiting, onReconnect: print.reconnect, signal: interruptSignal(json, "stopping the backup and removing its run directory") };
      const report = await (await import("../src/commands/backup")).backupCommand(await configure(flags), options);
      emit(flags, report, () => print.backup(report));
      return EXIT.ok;
    },
  },
  {
    name: "db:restore",
    summary: "restore one or all databases from a backup, verified",
    argument: { name: "<backup>", description: "a backup run id, or a <db>.dump file" },
    usage: "<backup> [options]",
    flags: { db: "restore only this database", into: true, json: true },
    example: "npm run db:restore -- 20250101T120000Z-ab12 --db apidb --into apidb_restored",
    async run(flags, backup) {
      const db = flags.db?.length ? oneDb(flags, "db:restore") : undefined;
      const lockTimeoutMs = deployLockWaitMs();
      const report = await (await import("../src/backup/restore")).restoreBackup(await configure(flags), { backup: backup!, db, into: flags.into, lockTimeoutMs });
      emit(flags, report, () => print.restore(report));
      return EXIT.ok;
    },
  },
  {
    name: "schema:docs",
    summary: "write docs/schema.md (ER diagrams, column tables) from the entities; reads no database",
    flags: { check: "write nothing: exit 1 if docs/schema.md is out of date", json: true },
    example: "npm run schema:docs -- --check",
    async run(flags) {
      const report = (await import("../src/commands/docs")).schemaDocs({ check: flags.check });
      emit(flags, { command: "schema:docs", ...report }, () => {
        if (flags.check) console.log(report.changed ? `${report.file} is out of date: run npm run schema:docs` : `${report.file} is up to date`);
        else console.log(report.changed ? `wrote ${report.file}` : `${report.file}: no changes`);
      });
      return flags.check && report.changed ? EXIT.failed : EXIT.ok;
    },
  },
  {
    name: "db:maintenance",
    summary: "the maintenance window by hand: on, off or status (admindb maintenance_mode)",
    argument: { name: "<on|off|status>", description: "turn maintenance mode on or off, or show it" },
    usage: "<on|off|status> [options]",
    flags: { message: true, json: true },
    example: 'npm run db:maintenance -- on --message "Upgrading, back at 10:30"',
    async run(flags, action) {
      if (action !== "on" && action !== "off" && action !== "status") throw new UsageError(`db:maintenance: expected on, off or status (got ${JSON.stringify(action)})`);
      if (flags.message !== undefined && action !== "on") throw new UsageError("db:maintenance: --message goes with on");
      const report = await (await import("../src/commands/maintenance")).maintenanceCommand(await configure(flags), { action, message: flags.message, lockTimeoutMs: deployLockWaitMs(), onWait: print.waiting });
      emit(flags, report, () => print.maintenance(report));
      return EXIT.ok;
    },
  },
  {
    name: "db:up",
    summary: "start the embedded local PostgreSQL (.pgdata/), creating it first",
    flags: {},
    example: "npm run db:up",
    async run() {
      const { created, port } = await startEmbedded();
      console.log(`embedded PostgreSQL ${created ? "created and " : ""}running on 127.0.0.1:${port} (data in ${shownPath(clusterDataDir(EMBEDDED_ROOT))})`);
      return EXIT.ok;
    },
  },
  {
    name: "db:down",
    summary: "stop the embedded local PostgreSQL",
    flags: {},
    example: "npm run db:down",
    async run() {
      console.log(stopCluster(EMBEDDED_ROOT) ? "embedded PostgreSQL stopped" : "embedded PostgreSQL was not running");
      return EXIT.ok;
    },
  },
  {
    name: "db:reset",
    summary: "recreate the embedded local PostgreSQL, empty",
    flags: {},
    example: "npm run db:reset",
    async run() {
      destroyCluster(EMBEDDED_ROOT);
      const { port } = await startEmbedded();
      console.log(`embedded PostgreSQL recreated, empty, on 127.0.0.1:${port}`);
      return EXIT.ok;
    },
  },
  {
    name: "db:destroy",
    summary: "stop the embedded local PostgreSQL and delete it with all its data (wherever it lives)",
    flags: {},
    example: "npm run db:destroy",
    async run() {
      const removed = destroyClusterEverywhere(EMBEDDED_ROOT);
      console.log(removed.length ? `embedded PostgreSQL removed: ${removed.map(shownPath).join(", ")}` : "no embedded PostgreSQL to remove");
      return EXIT.ok;
    },
  },
];

/** A path relative to the working directory when it is inside it. */
function shownPath(p: string): string {
  const rel = path.relative(process.cwd(), p);
  return rel && !rel.startsWith("..") ? rel : p;
}

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === "help" || name === "--help" || name === "-h") {
    const def = COMMANDS.find((c) => c.name === rest[0]);
    if (name === "help" && def) parseCommand(def, ["--help"]);
    else process.stdout.write(commandList(COMMANDS));
    return EXIT.ok;
  }
  const def = COMMANDS.find((c) => c.name === name);
  if (!def) {
    const closest = closestCommand(COMMANDS, name);
    process.stdout.write(commandList(COMMANDS));
    throw new UsageError(`unknown command "${name}"${closest ? ` (did you mean ${closest}?)` : ""}`);
  }
  const parsed = parseCommand(def, rest); // first: a bad flag changes nothing, reads nothing
  if (!parsed) return EXIT.ok; // --help
  if (parsed.flags.json && npmBannerOnStdout(process.env)) {
    console.error(`note: npm printed its "> ${name}" banner on stdout before the JSON: npm run -s ${name} -- ... keeps stdout to the JSON alone`);
  }
  const envs = parsed.flags.env ?? [];
  if (def.name === "migration:show" && (envs.length > 1 || parsed.flags.allEnvs)) return showAcrossEnvironments(parsed.flags);
  if (envs.length > 1) throw new UsageError(`${def.name}: --env is given once (migration:show compares several)`);
  if (parsed.flags.allowUnreachable) throw new UsageError(`${def.name}: --allow-unreachable goes with several --env (or --all-envs)`);
  if (parsed.flags.allEnvs) throw new UsageError(`${def.name}: --all-envs goes with migration:show`);
  connectionSource = applyEnvironment(process.env, process.cwd(), envs[0]); // then: every setting the command checks may come from .env files
  return def.run(parsed.flags, parsed.argument);
}

function passwordsInEnv(): string[] {
  const out: string[] = [];
  const urls = ["DATABASE", "AUTHDB", "APIDB", "ADMINDB"].flatMap((v) => [`${v}_URL`, `${v}_DIRECT_URL`]);
  for (const key of [...urls, "MIGRATION_SHADOW_URL", "MIGRATION_SCRATCH_URL", "PGPASSWORD"]) {
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
