// The migration files of each database, read from src/migrations/<db>/ (or MIGRATIONS_DIR): named and
// ordered the way TypeORM does it (class name ending in a 13-digit timestamp), with a checksum of
// each file. A file is read as text to list it, and compiled and loaded only when it is to run.
import * as crypto from "crypto";
import * as fs from "fs";
import Module = require("module");
import * as path from "path";
import type { MigrationInterface } from "typeorm";
import type { DbName } from "../databases";
import { MigrationError, UsageError } from "../errors";
import { PROJECT_ROOT } from "../paths";
import { compileAll, compiledSource } from "./compile";

export interface MigrationFile {
  /** TypeORM's name: the class name, e.g. `Init1732440000000`. */
  name: string;
  timestamp: number;
  /** Path relative to the project root, e.g. `src/migrations/apidb/1732440000000-Init.ts`. */
  file: string;
  path: string;
  checksum: string;
  /** Expand/contract: a migration declaring `phase = "contract"` waits for migration:complete. */
  phase?: "expand" | "contract";
  /** A squash (migration:squash): the migrations it stands for, as its `replaces` lists them. */
  replaces?: string[];
  /** The migration itself, compiled and loaded on first use. */
  readonly migration: MigrationInterface;
  readonly migrationClass: new () => MigrationInterface;
}

export function migrationsDir(root: string, db: DbName): string {
  return path.join(root, db);
}

/** sha256 of the file with line endings normalized, so a CRLF checkout matches an LF one. */
export function checksumOf(text: string): string {
  return crypto.createHash("sha256").update(text.replace(/\r\n?/g, "\n")).digest("hex");
}

function isMigrationSource(file: string): boolean {
  return /\.(ts|js)$/.test(file) && !file.endsWith(".d.ts") && !/^index\./.test(file);
}

/**
 * The name migrations import the project's helpers by, wherever the file lives (src/migrations/<db>/,
 * a copy under /tmp, dist/): `import { backfill } from "ai-micro-migrations/evolve"`. A relative path
 * would break as soon as the file is copied; Node cannot find a package by this name from /tmp, so
 * the loader resolves it (tsconfig.json's `paths` tells the type checker the same).
 */
export const HELPERS_MODULE = "ai-micro-migrations/evolve";

let helpersResolved = false;

/** Makes `require(HELPERS_MODULE)` find src/evolve (or dist/src/evolve when running compiled). */
export function resolveMigrationHelpers(): void {
  if (helpersResolved) return;
  helpersResolved = true;
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const Module = require("module") as { _resolveFilename: (request: string, ...rest: unknown[]) => string };
  const original = Module._resolveFilename;
  const target = path.join(__dirname, "..", "evolve", "index");
  Module._resolveFilename = function (request: string, ...rest: unknown[]) {
    return original.call(this, request === HELPERS_MODULE ? target : request, ...rest);
  };
}

/** Lets plain Node require a .ts migration (under ts-node or jest this is already so). */
function ensureTypeScriptLoader(): void {
  if (require.extensions[".ts"] || process.env.JEST_WORKER_ID) return;
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  (require("ts-node") as typeof import("ts-node")).register({ transpileOnly: true, project: path.join(PROJECT_ROOT, "tsconfig.json") });
}

/**
 * Makes a `.ts` module requirable without starting ts-node now: it is registered (a few hundred ms)
 * the first time a migration requires a TypeScript module of its own, which most never do.
 */
function typeScriptOnDemand(): void {
  if (require.extensions[".ts"] || process.env.JEST_WORKER_ID) return;
  require.extensions[".ts"] = (module, filename) => {
    delete require.extensions[".ts"];
    ensureTypeScriptLoader();
    require.extensions[".ts"]!(module, filename);
  };
}

let compiledChecksums: Record<string, string> | undefined;

/**
 * The JavaScript the build compiled from this source (dist/src/migrations/...), when the build
 * compiled exactly the source that is there now (bin/build.js records each source's checksum):
 * loading it skips starting the TypeScript compiler. Anything else, like a migration written or
 * edited since the last build, is compiled on the fly from the .ts.
 */
function compiledTwin(source: string, checksum: string): string | undefined {
  const relative = path.relative(PROJECT_ROOT, source);
  if (relative.startsWith("..") || !source.endsWith(".ts") || process.env.JEST_WORKER_ID) return undefined;
  try {
    compiledChecksums ??= JSON.parse(fs.readFileSync(path.join(PROJECT_ROOT, "dist", "migrations.json"), "utf8")) as Record<string, string>;
  } catch {
    compiledChecksums = {};
  }
  const twin = path.join(PROJECT_ROOT, "dist", relative.replace(/\.ts$/, ".js"));
  return compiledChecksums[relative] === checksum && fs.existsSync(twin) ? twin : undefined;
}

/**
 * Runs a migration's JavaScript, compiled in a batch (./compile), as the module of its .ts file:
 * its own requires resolve from its folder as usual, then from this project's packages (a
 * MIGRATIONS_DIR outside the project still finds typeorm).
 */
function requireCompiled(db: DbName, full: string, checksum: string): Record<string, unknown> {
  const { js, errors } = compiledSource(full, checksum);
  if (errors.length) throw new MigrationError(`${path.relative(PROJECT_ROOT, full)}${errors[0]}`, db);
  typeScriptOnDemand(); // for a .ts module the migration itself requires
  const internal = Module as unknown as { _nodeModulePaths(dir: string): string[] };
  const loaded = new Module(full, module) as Module & { _compile(code: string, file: string): void };
  loaded.filename = full;
  loaded.paths = [...new Set([...internal._nodeModulePaths(path.dirname(full)), path.join(PROJECT_ROOT, "node_modules")])];
  loaded._compile(js, full);
  return loaded.exports as Record<string, unknown>;
}

function loadClass(db: DbName, full: string, expectedName: string, checksum: string): new () => MigrationInterface {
  const twin = compiledTwin(full, checksum);
  let exported: Record<string, unknown>;
  // Migrations may import the project's helpers by a fixed name, wherever they live.
  resolveMigrationHelpers();
  // Under jest, its own transform loads the file (one module registry for the test and the migration).
  if (!twin && full.endsWith(".ts") && !process.env.JEST_WORKER_ID) exported = requireCompiled(db, full, checksum);
  else {
    if (!twin && full.endsWith(".ts")) ensureTypeScriptLoader();
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    exported = require(twin ?? full) as Record<string, unknown>;
  }
  const found = Object.values(exported).find(
    (v): v is new () => MigrationInterface => typeof v === "function" && typeof (v as { prototype?: { up?: unknown } }).prototype?.up === "function",
  );
  const shown = path.relative(PROJECT_ROOT, full);
  if (!found) throw new MigrationError(`${shown} exports no migration class (a class with up and down)`, db);
  const name = new found().name ?? found.name;
  if (name !== expectedName) throw new MigrationError(`${shown}: migration is named ${name}, its class declaration says ${expectedName}`, db);
  return found;
}

/** The migration name a file declares: its `name = "..."` if set, else its exported class name. */
function declaredName(source: string): string | undefined {
  const explicit = /^\s*(?:public\s+)?(?:readonly\s+)?name\s*=\s*["'](\w+)["']/m.exec(source)?.[1];
  return explicit ?? /export\s+(?:default\s+)?class\s+(\w+)/.exec(source)?.[1];
}

/** The names a squash's `replaces = [...]` lists (read from the source: no compiling to know it). */
function declaredReplaces(source: string): string[] | undefined {
  const list = /^\s*(?:public\s+)?(?:readonly\s+)?replaces\s*=\s*\[([^\]]*)\]/m.exec(source)?.[1];
  return list === undefined ? undefined : [...list.matchAll(/["'](\w+)["']/g)].map((m) => m[1]);
}

/** The extensions these migrations create (`CREATE EXTENSION ...` in their source). */
export function extensionsCreatedBy(files: MigrationFile[]): string[] {
  const names = new Set<string>();
  for (const file of files) {
    const source = fs.readFileSync(file.path, "utf8");
    for (const m of source.matchAll(/CREATE\s+EXTENSION\s+(?:IF\s+NOT\s+EXISTS\s+)?\\?"?([\w-]+)/gi)) names.add(m[1]);
  }
  return [...names];
}

/**
 * Syntax errors of a migration source, as `file:line:col: message` lines (relative path). Only the
 * syntax: a type error does not stop TypeScript from emitting JavaScript that runs.
 */
export function syntaxErrors(file: MigrationFile): string[] {
  return compiledSource(file.path, file.checksum).errors.map((e) => `${file.file}${e}`);
}

const toCompile = (files: MigrationFile[]) => files.filter((f) => !compiledTwin(f.path, f.checksum)).map((f) => ({ file: f.path, checksum: f.checksum }));

/**
 * Compiles and loads each migration before a run changes anything, so a broken file stops the run
 * in its plan, naming the file, line and column, instead of half way through the deploy.
 */
export function checkLoadable(db: DbName, files: MigrationFile[]): void {
  compileAll(toCompile(files));
  for (const file of files) {
    if (file.path.endsWith(".ts") && !compiledTwin(file.path, file.checksum)) {
      const [first] = syntaxErrors(file);
      if (first) throw new MigrationError(first, db);
    }
    try {
      void file.migration;
    } catch (error) {
      if (error instanceof MigrationError) throw error;
      const message = String((error as Error)?.message ?? error).split("\n").find((l) => l.trim() && !/Unable to compile/.test(l)) ?? "cannot be loaded";
      throw new MigrationError(`${file.file}: ${message.trim()}`, db);
    }
  }
}

/** All migrations of a database, oldest first. */
export function loadMigrationFiles(root: string, db: DbName): MigrationFile[] {
  const dir = migrationsDir(root, db);
  if (!fs.existsSync(dir)) return [];
  const listed: MigrationFile[] = [];
  for (const entry of fs.readdirSync(dir).filter(isMigrationSource).sort()) {
    const full = path.join(dir, entry);
    const source = fs.readFileSync(full, "utf8");
    const name = declaredName(source);
    if (!name) throw new MigrationError(`${entry} declares no migration class`, db);
    if (!/\d{13}$/.test(name)) throw new MigrationError(`migration ${name} in ${entry} has no 13-digit timestamp at the end of its class name`, db);
    const checksum = checksumOf(source);
    const replaces = declaredReplaces(source);
    let loaded: (new () => MigrationInterface) | undefined;
    let instance: MigrationInterface | undefined;
    const phase = /^\s*(?:public\s+)?(?:readonly\s+)?phase\s*=\s*["'](expand|contract)["']/m.exec(source)?.[1] as MigrationFile["phase"];
    listed.push({
      name,
      ...(phase ? { phase } : {}),
      timestamp: Number(name.slice(-13)),
      file: path.relative(PROJECT_ROOT, full),
      path: full,
      checksum,
      ...(replaces ? { replaces } : {}),
      get migrationClass() {
        return (loaded ??= loadClass(db, full, name, checksum));
      },
      get migration() {
        return (instance ??= new this.migrationClass());
      },
    });
  }
  const seen = new Map<string, string>();
  for (const m of listed) {
    const other = seen.get(m.name);
    if (other) throw new MigrationError(`${path.basename(other)} and ${path.basename(m.file)} both declare migration ${m.name}`, db);
    seen.set(m.name, m.file);
  }
  return listed.sort((a, b) => a.timestamp - b.timestamp || a.name.localeCompare(b.name));
}

/** The name given to generate/create: the class name without its 13-digit timestamp. */
export function baseName(file: MigrationFile): string {
  return file.name.slice(0, -13);
}

function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let diagonal = row[0];
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const next = Math.min(row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] === b[j - 1] ? 0 : 1));
      diagonal = row[j];
      row[j] = next;
    }
  }
  return row[b.length];
}

/**
 * The migrations a user means by `given`: the class name (`AddBirthDate1795606683139`), the name
 * given to generate or create (`AddBirthDate`), or the file name (`1795606683139-AddBirthDate.ts`,
 * with or without a folder or `.ts`). Across databases one change shares its name and timestamp.
 * Throws a UsageError for an unknown name, listing the closest ones, or an ambiguous one.
 */
export function findMigrations(files: MigrationFile[], given: string, db?: DbName): MigrationFile[] {
  const wanted = path.basename(given).replace(/\.(ts|js)$/, "");
  const matches = files.filter((f) => f.name === wanted || baseName(f) === wanted || path.basename(f.file).replace(/\.(ts|js)$/, "") === wanted);
  if (!matches.length) {
    const names = [...new Set(files.map((f) => f.name))];
    const closest = names
      .map((n) => ({ n, d: Math.min(editDistance(wanted.toLowerCase(), n.toLowerCase()), editDistance(wanted.toLowerCase(), n.slice(0, -13).toLowerCase())) }))
      .sort((a, b) => a.d - b.d || a.n.localeCompare(b.n))
      .slice(0, 3)
      .map((c) => c.n);
    throw new UsageError(`unknown migration "${given}"${closest.length ? ` (closest: ${closest.join(", ")})` : ""}`, db);
  }
  const stamps = [...new Set(matches.map((m) => m.timestamp))];
  if (stamps.length > 1) {
    throw new UsageError(`"${given}" names more than one migration (${[...new Set(matches.map((m) => m.name))].join(", ")}): give the full name`, db);
  }
  return matches;
}
