// The embedded default server: a local cluster kept under .pgdata/ at the project root.
import { clusterUrl, ensureCluster, readClusterInfo } from "./local-cluster";
import { EMBEDDED_ROOT } from "../paths";

export { EMBEDDED_ROOT };

/** Server URL (database `postgres`) of the embedded cluster if it was ever set up, else undefined. */
export function embeddedUrl(): string | undefined {
  const info = readClusterInfo(EMBEDDED_ROOT);
  return info ? clusterUrl(info) : undefined;
}

/** Sets up (first time) and starts the embedded cluster. */
export async function startEmbedded(): Promise<{ url: string; created: boolean; port: number }> {
  const { info, created } = await ensureCluster(EMBEDDED_ROOT);
  return { url: clusterUrl(info), created, port: info.port };
}
