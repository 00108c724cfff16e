// Loads the pg driver at the CLI's start, a little faster: pg asks once, as it loads, whether it runs
// in a Cloudflare Worker, and on Node 20 (which has no `navigator`) that question touches the global
// `Response`, which loads Node's whole fetch implementation (undici, about 20 ms) for nothing. A
// `navigator` that says Node.js, there only while pg loads, answers it first.
const g = globalThis as { navigator?: unknown };
if (g.navigator === undefined) {
  g.navigator = { userAgent: "Node.js" };
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    require("pg");
  } finally {
    delete g.navigator;
  }
}
export {};
