import type { TestServer } from "./server";

export default async function globalTeardown(): Promise<void> {
  await ((globalThis as Record<string, unknown>).__TEST_SERVER__ as TestServer | undefined)?.stop();
}
