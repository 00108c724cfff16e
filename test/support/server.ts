// The one PostgreSQL server of a test run: TEST_DATABASE_URL (an existing server, as a superuser);
// else a pgvector/pgvector:pg15 container when a container runtime answers; else a throwaway local
// cluster from the installed server binaries. Never a mock.
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { clusterUrl, destroyCluster, ensureCluster } from "../../src/postgres/local-cluster";

export interface TestServer {
  /** Superuser URL of database `postgres`. */
  url: string;
  kind: "TEST_DATABASE_URL" | "container" | "local cluster";
  stop(): Promise<void>;
}

async function startContainer(): Promise<TestServer | undefined> {
  let tc: typeof import("testcontainers");
  try {
    tc = await import("testcontainers");
    await tc.getContainerRuntimeClient();
  } catch {
    return undefined; // no runtime answers: fall back to a local cluster
  }
  const password = "test-" + Math.random().toString(36).slice(2);
  const container = await new tc.GenericContainer("pgvector/pgvector:pg15")
    .withEnvironment({ POSTGRES_PASSWORD: password })
    .withExposedPorts(5432)
    .withWaitStrategy(tc.Wait.forLogMessage(/database system is ready to accept connections/, 2))
    .start();
  return {
    url: `postgres://postgres:${password}@${container.getHost()}:${container.getMappedPort(5432)}/postgres`,
    kind: "container",
    stop: async () => {
      await container.stop();
    },
  };
}

async function startLocalCluster(): Promise<TestServer> {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), "aimig-test-"));
  fs.chmodSync(root, 0o755);
  const { info } = await ensureCluster(root, { fast: true });
  return { url: clusterUrl(info), kind: "local cluster", stop: async () => destroyCluster(root) };
}

export async function startTestServer(): Promise<TestServer> {
  if (process.env.TEST_DATABASE_URL) {
    return { url: process.env.TEST_DATABASE_URL, kind: "TEST_DATABASE_URL", stop: async () => undefined };
  }
  return (await startContainer()) ?? (await startLocalCluster());
}
