// db:maintenance: the maintenance window by hand, as the old manual did with hand-typed SQL, in the
// shape the services read (`{"enabled": true, "message": "..."}` in admindb.system_settings). On and
// off wait for a running deploy (its admindb lock), so neither overwrites the other.
import type { Config } from "../config";
import { MigrationError } from "../errors";
import { checkExists, withLockedStates } from "../deploy/plan";
import { MaintenanceState, readMaintenance, runAlive, setMaintenance } from "../deploy/maintenance";
import { openDataSource } from "../postgres/connect";
import { newRunId } from "../run-id";
import type { LockWait } from "../runner/locks";

export const DEFAULT_MESSAGE = "Scheduled maintenance";

export interface MaintenanceReport {
  command: "maintenance";
  action: "on" | "off" | "status";
  before?: MaintenanceState;
  after: MaintenanceState;
}

function missing(): MigrationError {
  return new MigrationError("has no maintenance_mode setting yet (run npm run migration:run first)", "admindb");
}

export async function maintenanceCommand(
  config: Config, options: { action: "on" | "off" | "status"; message?: string; lockTimeoutMs: number; onWait?: LockWait },
): Promise<MaintenanceReport> {
  if (options.action === "status") {
    const dataSource = await openDataSource(config.targets.admindb, config.connectTimeoutMs);
    try {
      const after = await readMaintenance(dataSource);
      if (!after) throw missing();
      // A run's connections carry its id: none left on the server means the run is gone.
      if (after.run) after.runAlive = await runAlive(dataSource, after.run);
      return { command: "maintenance", action: "status", after };
    } finally {
      await dataSource.destroy().catch(() => undefined);
    }
  }
  return withLockedStates(config, ["admindb"], { runId: newRunId(), lockTimeoutMs: options.lockTimeoutMs, onWait: options.onWait }, async ([admin]) => {
    checkExists(admin);
    const before = await readMaintenance(admin.dataSource);
    if (!before) throw missing();
    const enabled = options.action === "on";
    await setMaintenance(admin.dataSource, { enabled, message: enabled ? (options.message ?? DEFAULT_MESSAGE) : "" });
    return { command: "maintenance", action: options.action, before, after: (await readMaintenance(admin.dataSource))! };
  });
}
