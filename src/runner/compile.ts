// Compiling migration sources to JavaScript. Types are stripped by sucrase (what a run needs is the
// JavaScript; type errors are the build's business): 10,000 migrations in about half a second, where
// TypeScript's own emit took seconds. sucrase keeps every line where it was, so a stack trace points
// into the .ts. A file sucrase cannot take (a syntax error) or would compile otherwise than
// TypeScript (decorators, namespaces) goes to TypeScript, whose diagnostics name the line and
// column. The output is kept by checksum, so checking a file and loading it compile it once.
import * as fs from "fs";
import * as path from "path";
import { PROJECT_ROOT } from "../paths";

type TS = typeof import("typescript");
type Sucrase = typeof import("sucrase");

/** What compiling one source gave: its JavaScript, or its syntax errors (`line:col: message`). */
export interface Compiled {
  js: string;
  /** Syntax errors as `:line:col: message` (the file name is the caller's to add). */
  errors: string[];
}

/** Files per TypeScript program (the fallback): shares the program's fixed cost, keeps memory flat. */
const BATCH_SIZE = 100;

const compiled = new Map<string, Compiled>();
const keyOf = (file: string, checksum: string) => `${checksum}:${file}`;

let ts: TS | undefined;
let sucrase: Sucrase | undefined;
let options: import("typescript").CompilerOptions | undefined;

/** The project's compiler options (tsconfig.json, as ts-node read them), made to emit one file at a time. */
function compilerOptions(typescript: TS): import("typescript").CompilerOptions {
  if (options) return options;
  const read = typescript.readConfigFile(path.join(PROJECT_ROOT, "tsconfig.json"), (f) => fs.readFileSync(f, "utf8"));
  const fromProject = read.config?.compilerOptions
    ? typescript.convertCompilerOptionsFromJson(read.config.compilerOptions, PROJECT_ROOT).options
    : {};
  options = {
    ...fromProject,
    // What transpileModule sets: no types, no other files, no declarations, JavaScript in memory.
    isolatedModules: true,
    noResolve: true,
    // Emit only: references are linked for import elision, nothing is type-checked.
    noCheck: true,
    removeComments: false,
    noLib: true,
    types: [],
    lib: undefined,
    declaration: false,
    declarationMap: false,
    sourceMap: false,
    inlineSourceMap: false,
    noEmit: false,
    noEmitOnError: false,
    incremental: false,
    composite: false,
    tsBuildInfoFile: undefined,
    outDir: undefined,
    outFile: undefined,
    rootDir: undefined,
    suppressOutputPathCheck: true,
    allowNonTsExtensions: true,
    module: fromProject.module ?? typescript.ModuleKind.CommonJS,
    target: fromProject.target ?? typescript.ScriptTarget.ES2022,
  };
  return options;
}

function where(typescript: TS, d: import("typescript").Diagnostic): string {
  const at = d.file && d.start !== undefined ? d.file.getLineAndCharacterOfPosition(d.start) : undefined;
  return `${at ? `:${at.line + 1}:${at.character + 1}` : ""}: ${typescript.flattenDiagnosticMessageText(d.messageText, " ")}`;
}

/** One program over `batch` (absolute paths with their text): each file's JavaScript and syntax errors. */
function compileBatch(typescript: TS, batch: Array<{ file: string; text: string; checksum: string }>): void {
  const opts = compilerOptions(typescript);
  const sources = new Map(batch.map((b) => [b.file, typescript.createSourceFile(b.file, b.text, opts.target!, false, typescript.ScriptKind.TS)]));
  const outputs = new Map<string, string>();
  const host: import("typescript").CompilerHost = {
    getSourceFile: (name) => sources.get(name),
    writeFile: (name, text) => outputs.set(name, text),
    getDefaultLibFileName: () => "lib.d.ts",
    useCaseSensitiveFileNames: () => true,
    getCanonicalFileName: (name) => name,
    getCurrentDirectory: () => "",
    getNewLine: () => "\n",
    fileExists: (name) => sources.has(name),
    readFile: () => "",
    directoryExists: () => true,
    getDirectories: () => [],
  };
  const program = typescript.createProgram([...sources.keys()], opts, host);
  program.emit();
  for (const b of batch) {
    const errors = program.getSyntacticDiagnostics(sources.get(b.file)).map((d) => where(typescript, d));
    const js = outputs.get(b.file.replace(/\.ts$/, ".js")) ?? "";
    compiled.set(keyOf(b.file, b.checksum), { js, errors });
  }
}

/**
 * What sucrase does not compile as TypeScript does: a decorator (no decorator metadata, which
 * tsconfig asks for), a namespace or module block (taken for types only: its values would vanish)
 * and an `accessor` field (left as is, which Node 20 cannot run). A false match only costs time.
 */
const TYPESCRIPT_ONLY = /^\s*@[A-Za-z_$]|\b(?:namespace|module)\s+[A-Za-z_$][\w$.]*\s*\{|\baccessor\s+[A-Za-z_$#[]/m;

/** sucrase's JavaScript for one source, or undefined when TypeScript should have it. */
function stripTypes(file: string, text: string): string | undefined {
  if (TYPESCRIPT_ONLY.test(text)) return undefined;
  // Loaded on the first compile (about 35 ms): most commands read migration files without compiling them.
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  sucrase ??= require("sucrase") as Sucrase;
  try {
    // ES syntax stays as written (Node runs ES2022 as tsconfig targets): only types and imports change.
    return sucrase.transform(text, { transforms: ["typescript", "imports"], disableESTransforms: true, filePath: file }).code;
  } catch {
    return undefined;
  }
}

/**
 * Compiles these TypeScript sources (absolute path and checksum each) that are not compiled yet.
 * Cheap to call again: what is compiled is kept.
 *
 * @example compileAll(files.map((f) => ({ file: f.path, checksum: f.checksum })))
 */
export function compileAll(files: Array<{ file: string; checksum: string }>): void {
  const toTypeScript: Array<{ file: string; checksum: string; text: string }> = [];
  for (const f of files) {
    if (!f.file.endsWith(".ts") || compiled.has(keyOf(f.file, f.checksum))) continue;
    const text = fs.readFileSync(f.file, "utf8");
    const js = stripTypes(f.file, text);
    if (js === undefined) toTypeScript.push({ ...f, text });
    else compiled.set(keyOf(f.file, f.checksum), { js, errors: [] });
  }
  if (!toTypeScript.length) return;
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  ts ??= require("typescript") as TS;
  for (let i = 0; i < toTypeScript.length; i += BATCH_SIZE) compileBatch(ts, toTypeScript.slice(i, i + BATCH_SIZE));
}

/**
 * The JavaScript of one TypeScript source with this checksum (compiled now if not yet).
 *
 * @example compiledSource("/app/src/migrations/apidb/1795-AddX.ts", "ab12...").errors // []
 */
export function compiledSource(file: string, checksum: string): Compiled {
  compileAll([{ file, checksum }]);
  return compiled.get(keyOf(file, checksum))!;
}
