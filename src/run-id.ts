import * as crypto from "crypto";

/** A sortable, unique id for one deploy run: 20261124T120301Z-3fa9. Safe in file names. */
export function newRunId(now = new Date()): string {
  const stamp = now.toISOString().replace(/[-:]/g, "").replace(/\.\d+Z$/, "Z");
  return `${stamp}-${crypto.randomBytes(2).toString("hex")}`;
}
