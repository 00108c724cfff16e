// Parsing one command's arguments with commander, strictly: only that command's flags, only its
// positional argument. Commander prints nothing and exits nothing: its errors become one UsageError
// line (exit 2), its help goes to stdout. The command table itself is in cli.ts.
import { Command, CommanderError, Option } from "commander";
import { UsageError } from "../src/errors";

/** Every flag a command may take, as commander spells it, with its usual description. */
export const FLAGS = {
  db: { syntax: "--db <db>", description: "only this database: authdb, apidb or admindb (repeatable)" },
  to: { syntax: "--to <Name>", description: "apply pending migrations up to and including <Name>" },
  steps: { syntax: "--steps <n>", description: "undo the last <n> migrations of --db (default 1)" },
  dryRun: { syntax: "--dry-run", description: "print the SQL it would run, change nothing" },
  backup: { syntax: "--no-backup", description: "take no backup first (warns; not recommended)" },
  keep: { syntax: "--keep <n>", description: "keep only the newest <n> backup runs" },
  check: { syntax: "--check", description: "write nothing: print the SQL, exit 1 on any difference" },
  into: { syntax: "--into <name>", description: "restore into this new database, leave the original" },
  shadowUrl: { syntax: "--shadow-url <url>", description: "an empty scratch database (no password in the URL)" },
  json: { syntax: "--json", description: "print one JSON report on stdout" },
  all: { syntax: "--all", description: "every migration, applied ones too (reads no database)" },
  unsafe: { syntax: "--unsafe", description: "deploy despite lint findings not accepted (warns)" },
  fromBackup: { syntax: "--from-backup <backup>", description: "copy this backup (checked), not a fresh pg_dump" },
  scratchUrl: { syntax: "--scratch-url <url>", description: "an empty scratch database (no password)" },
  failOnPending: { syntax: "--fail-on-pending", description: "pending migrations fail the check too (exit 1)" },
  allEnvs: { syntax: "--all-envs", description: "every environment with a .env.<name> file here" },
  allowUnreachable: { syntax: "--allow-unreachable", description: "several --env: exit 0 when one cannot be read" },
  keepMaintenance: { syntax: "--keep-maintenance", description: "leave maintenance mode on after success" },
  message: { syntax: "--message <text>", description: "the message the services show (with on)" },
  rename: { syntax: "--rename <spec>", description: "rename, values kept: t.old=new or old=new (repeatable)" },
  drop: { syntax: "--drop <spec>", description: "delete on purpose: t.column or table (repeatable)" },
  force: { syntax: "--force", description: "contract despite recent writes to an old column" },
} as const;

/** Flags that may be given more than once: their values come as a list. */
const REPEATABLE: FlagName[] = ["db", "rename", "drop"];

export type FlagName = keyof typeof FLAGS;

/** Parsed flags, under commander's names (`--dry-run` is `dryRun`, `--no-backup` is `backup: false`). */
export interface Flags {
  db?: string[];
  to?: string;
  steps?: string;
  dryRun?: boolean;
  backup?: boolean;
  keep?: string;
  check?: boolean;
  into?: string;
  shadowUrl?: string;
  json?: boolean;
  /** `--env` may be given more than once (migration:show compares environments). */
  env?: string[];
  verbose?: boolean;
  all?: boolean;
  unsafe?: boolean;
  keepMaintenance?: boolean;
  message?: string;
  allEnvs?: boolean;
  allowUnreachable?: boolean;
  failOnPending?: boolean;
  fromBackup?: string;
  scratchUrl?: string;
  rename?: string[];
  drop?: string[];
  force?: boolean;
}

export interface CommandDef {
  name: string;
  /** One line for the command list and the top of --help. */
  summary: string;
  /** A positional argument, e.g. `{ name: "<Name>", description: "..." }` (`[Name]` when optional). */
  argument?: { name: string; description: string };
  /** What follows `npm run <name> --` in the usage line. */
  usage?: string;
  /** The command's own flags: `true` for the usual description, or its own. */
  flags: Partial<Record<FlagName, true | string>>;
  example: string;
  run(flags: Flags, argument: string | undefined): Promise<number>;
}

const COMMON = [
  { syntax: "--env <name>", description: "read .env.<name> (the server comes from it), then .env" },
  { syntax: "--verbose", description: "a stack trace for unexpected errors" },
];

function validFlags(def: CommandDef): string {
  const own = (Object.keys(def.flags) as FlagName[]).map((f) => FLAGS[f].syntax.split(" ")[0]);
  return [...own, "--env", "--verbose", "--help"].join(", ");
}

function usageLine(def: CommandDef): string {
  return `npm run ${def.name} -- ${def.usage ?? "[options]"}`;
}

function commandFor(def: CommandDef): Command {
  const cmd = new Command(def.name)
    .description(def.summary)
    .helpOption("-h, --help", "show this help")
    .showSuggestionAfterError(false)
    .exitOverride()
    .configureOutput({ writeOut: (s) => process.stdout.write(s), writeErr: (s) => process.stderr.write(s), outputError: () => undefined })
    .configureHelp({ commandUsage: () => usageLine(def) })
    .addHelpText("after", `\nExample:\n  ${def.example}\n`);
  if (def.argument) cmd.argument(def.argument.name, def.argument.description);
  for (const [name, description] of Object.entries(def.flags) as [FlagName, true | string][]) {
    const option = new Option(FLAGS[name].syntax, description === true ? FLAGS[name].description : description);
    if (REPEATABLE.includes(name)) option.argParser((value: string, previous: string[] | undefined) => [...(previous ?? []), value]);
    cmd.addOption(option);
  }
  for (const { syntax, description } of COMMON) {
    const option = new Option(syntax, description);
    if (syntax.startsWith("--env")) option.argParser((value: string, previous: string[] | undefined) => [...(previous ?? []), value]);
    cmd.addOption(option);
  }
  return cmd;
}

/** The command's flags and positional argument; `undefined` when --help was printed. Throws UsageError. */
export function parseCommand(def: CommandDef, argv: string[]): { flags: Flags; argument?: string } | undefined {
  const cmd = commandFor(def);
  try {
    cmd.parse(argv, { from: "user" });
  } catch (error) {
    if (!(error instanceof CommanderError)) throw error;
    if (error.exitCode === 0) return undefined; // help was printed
    throw new UsageError(`${def.name}: ${usageMessage(def, cmd, error)}`);
  }
  return { flags: cmd.opts<Flags>(), argument: cmd.args[0] };
}

function usageMessage(def: CommandDef, cmd: Command, error: CommanderError): string {
  const quoted = /'([^']*)'/.exec(error.message)?.[1] ?? "";
  switch (error.code) {
    case "commander.unknownOption":
      return `unknown option ${quoted.replace(/=.*/, "")} (valid: ${validFlags(def)})`;
    case "commander.optionMissingArgument":
      return `${quoted} needs a value`;
    case "commander.missingArgument":
      return `missing <${quoted}> (usage: ${usageLine(def)})`;
    case "commander.excessArguments": {
      const extra = cmd.args.slice(def.argument ? 1 : 0);
      return `unexpected argument${extra.length > 1 ? "s" : ""} ${extra.map((a) => JSON.stringify(a)).join(" ")} (usage: ${usageLine(def)})`;
    }
    default:
      return error.message.replace(/^error: /, "").split("\n")[0];
  }
}

/** The help of `node bin/migrate.js` with no command: every command, one line each. */
export function commandList(defs: CommandDef[]): string {
  const width = Math.max(...defs.map((d) => d.name.length));
  return [
    "Usage: npm run <command> [-- options]",
    "",
    "Commands:",
    ...defs.map((d) => `  ${d.name.padEnd(width)}  ${d.summary}`),
    "",
    "Every command takes --help, --env <name> and --verbose: npm run <command> -- --help",
    "",
  ].join("\n");
}

/** The command closest to a mistyped name (at most two edits away), if any. */
export function closestCommand(defs: CommandDef[], typed: string): string | undefined {
  let best: { name: string; distance: number } | undefined;
  for (const { name } of defs) {
    const distance = editDistance(typed, name);
    if (distance <= 2 && (!best || distance < best.distance)) best = { name, distance };
  }
  return best?.name;
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) current[j] = Math.min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    previous = current;
  }
  return previous[b.length];
}
