import { startTestServer } from "./server";

export default async function globalSetup(): Promise<void> {
  // The suites run the compiled CLI, as the npm scripts do: compile it once, before they start.
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  require("../../bin/build").ensureBuilt();
  const server = await startTestServer();
  // Workers are started after this and inherit the environment.
  process.env.TEST_PG_URL = server.url;
  (globalThis as Record<string, unknown>).__TEST_SERVER__ = server;
  console.log(`\ntest PostgreSQL: ${server.kind}`);
}
