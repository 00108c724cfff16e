// A worker thread of `compileMany` (./compile.ts): compiles each list of files it is sent and hands
// back the output, keeping nothing between requests.
import { parentPort } from "worker_threads";
import { compileAll, takeCompiled } from "./compile";

parentPort!.on("message", (files: Array<{ file: string; checksum: string }>) => {
  compileAll(files);
  parentPort!.postMessage(takeCompiled());
});
