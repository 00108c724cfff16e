// A worker thread of `compileMany` (./compile.ts): compiles the files it is given, hands back the output.
import { parentPort, workerData } from "worker_threads";
import { compileAll, compiledEntries } from "./compile";

compileAll(workerData as Array<{ file: string; checksum: string }>);
parentPort!.postMessage(compiledEntries());
