// migration:create: an empty timestamped migration for one database, to fill in by hand.
import * as fs from "fs";
import * as path from "path";
import type { DbName } from "../databases";
import { migrationsDir } from "../runner/migration-files";
import { checkMigrationName, renderMigration } from "../schema/render-migration";

export function createMigration(root: string, name: string | undefined, db: DbName, timestamp = Date.now()): string {
  checkMigrationName(name);
  const file = path.join(migrationsDir(root, db), `${timestamp}-${name}.ts`);
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, renderMigration(`${name}${timestamp}`, [], []), { flag: "wx" });
  return path.relative(process.cwd(), file);
}
