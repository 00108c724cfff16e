import { startTestServer } from "./server";

export default async function globalSetup(): Promise<void> {
  const server = await startTestServer();
  // Workers are started after this and inherit the environment.
  process.env.TEST_PG_URL = server.url;
  (globalThis as Record<string, unknown>).__TEST_SERVER__ = server;
  console.log(`\ntest PostgreSQL: ${server.kind}`);
}
