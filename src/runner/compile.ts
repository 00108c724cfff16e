// Compiling migration sources to JavaScript, many at a time. TypeScript's transpileModule (what
// ts-node does per file) builds a program and a type checker for every single file: for thousands of
// migrations that is most of a run. Here one program transpiles a batch of files (each file on its
// own, `isolatedModules`, nothing resolved, as transpileModule does), and the output is kept by
// checksum, so checking a file and loading it compile it once.
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { Worker } from "worker_threads";
import { PROJECT_ROOT } from "../paths";

type TS = typeof import("typescript");

/** What compiling one source gave: its JavaScript, or its syntax errors (`line:col: message`). */
export interface Compiled {
  js: string;
  /** Syntax errors as `:line:col: message` (the file name is the caller's to add). */
  errors: string[];
}

/** Files per program: big enough to share the program's fixed cost, small enough to keep memory flat. */
export const BATCH_SIZE = 100;

const compiled = new Map<string, Compiled>();
const keyOf = (file: string, checksum: string) => `${checksum}:${file}`;

let ts: TS | undefined;
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
 * Compiles these TypeScript sources (absolute path and checksum each) that are not compiled yet, a
 * batch per program. Cheap to call again: what is compiled is kept.
 *
 * @example compileAll(files.map((f) => ({ file: f.path, checksum: f.checksum })))
 */
export function compileAll(files: Array<{ file: string; checksum: string }>): void {
  const todo = files.filter((f) => f.file.endsWith(".ts") && !compiled.has(keyOf(f.file, f.checksum)));
  if (!todo.length) return;
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  ts ??= require("typescript") as TS;
  for (let i = 0; i < todo.length; i += BATCH_SIZE) {
    compileBatch(ts, todo.slice(i, i + BATCH_SIZE).map((f) => ({ ...f, text: fs.readFileSync(f.file, "utf8") })));
  }
}

/** What `compileAll` compiled, handed back (by a worker) and forgotten here. */
export function takeCompiled(): Array<[string, Compiled]> {
  const entries = [...compiled];
  compiled.clear();
  return entries;
}

/** Files below which starting workers costs more than it saves. */
const WORKERS_FROM = 150;
/** Files per request to a worker: its heap holds one request's output at a time. */
const CHUNK_SIZE = 500;

/** One request to a worker: the output for `files`, or the error that ended the worker. */
function request(worker: Worker, files: Array<{ file: string; checksum: string }>): Promise<Array<[string, Compiled]>> {
  return new Promise((resolve, reject) => {
    const done = () => {
      worker.off("message", onMessage);
      worker.off("error", onError);
      worker.off("exit", onExit);
    };
    const onMessage = (entries: Array<[string, Compiled]>) => (done(), resolve(entries));
    const onError = (error: Error) => (done(), reject(error));
    const onExit = (code: number) => (done(), reject(new Error(`worker exited with code ${code}`)));
    worker.on("message", onMessage);
    worker.on("error", onError);
    worker.on("exit", onExit);
    worker.postMessage(files);
  });
}

/**
 * `compileAll` for many files at once, in chunks over worker threads (one per core, at most 4):
 * faster on more cores, and each worker's heap is small and freed when it ends, so compiling
 * thousands of migrations does not leave the run's own heap grown by the compiler's garbage. Few
 * files, or a TypeScript entry (ts-node, jest), compile in this thread; so does a chunk whose worker
 * failed (e.g. a file too big for its heap).
 *
 * @example await compileMany(pending.map((f) => ({ file: f.path, checksum: f.checksum })))
 */
export async function compileMany(files: Array<{ file: string; checksum: string }>): Promise<void> {
  const todo = files.filter((f) => f.file.endsWith(".ts") && !compiled.has(keyOf(f.file, f.checksum)));
  const script = path.join(__dirname, "compile-worker.js");
  if (todo.length < WORKERS_FROM || !__filename.endsWith(".js") || !fs.existsSync(script)) return compileAll(todo);
  const count = Math.max(1, Math.min(4, os.availableParallelism?.() ?? os.cpus().length));
  const size = Math.min(CHUNK_SIZE, Math.ceil(todo.length / count));
  const chunks: Array<typeof todo> = [];
  for (let i = 0; i < todo.length; i += size) chunks.push(todo.slice(i, i + size));
  const received: Array<Array<[string, Compiled]>> = [];
  await Promise.all(Array.from({ length: Math.min(count, chunks.length) }, async () => {
    let worker: Worker | undefined = new Worker(script, { resourceLimits: { maxOldGenerationSizeMb: 64, maxYoungGenerationSizeMb: 8 } });
    try {
      for (let chunk = chunks.shift(); chunk; chunk = chunks.shift()) {
        if (worker) {
          try {
            received.push(await request(worker, chunk));
            continue;
          } catch {
            void worker.terminate();
            worker = undefined;
          }
        }
        compileAll(chunk);
      }
    } finally {
      await worker?.terminate();
    }
  }));
  for (const entries of received) for (const [key, value] of entries) compiled.set(key, value);
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
