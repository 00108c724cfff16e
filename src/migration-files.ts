// The migration files of each database: loaded from src/migrations/<db>/, named and ordered the way
// TypeORM does it (class name ending in a 13-digit timestamp), with a checksum of each file.
import * as crypto from "crypto";
import * as fs from "fs";
import * as path from "path";
import type { MigrationInterface } from "typeorm";
import type { DbName } from "./databases";
import { MigrationError } from "./errors";

const PROJECT_ROOT = path.resolve(__dirname, "..");

export interface MigrationFile {
  /** TypeORM's name: the class name, e.g. `Init1732440000000`. */
  name: string;
  timestamp: number;
  /** Path relative to the project root, e.g. `src/migrations/apidb/1732440000000-Init.ts`. */
  file: string;
  checksum: string;
  migration: MigrationInterface;
  migrationClass: new () => MigrationInterface;
}

export function migrationsDir(root: string, db: DbName): string {
  return path.join(root, db);
}

/** sha256 of the file with line endings normalized, so a CRLF checkout matches an LF one. */
export function checksumOf(text: string): string {
  return crypto.createHash("sha256").update(text.replace(/\r\n?/g, "\n")).digest("hex");
}

function isMigrationSource(file: string): boolean {
  return (/\.(ts|js)$/.test(file) && !file.endsWith(".d.ts")) && !/^index\./.test(file);
}

/** All migrations of a database, oldest first. */
export function loadMigrationFiles(root: string, db: DbName): MigrationFile[] {
  const dir = migrationsDir(root, db);
  if (!fs.existsSync(dir)) return [];
  const loaded: MigrationFile[] = [];
  for (const entry of fs.readdirSync(dir).filter(isMigrationSource).sort()) {
    const full = path.join(dir, entry);
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const exported = require(full) as Record<string, unknown>;
    const classes = Object.values(exported).filter(
      (v): v is new () => MigrationInterface => typeof v === "function" && typeof (v as { prototype?: { up?: unknown } }).prototype?.up === "function",
    );
    for (const migrationClass of classes) {
      const migration = new migrationClass();
      const name = migration.name ?? migrationClass.name;
      const timestamp = Number(name.slice(-13));
      if (!/\d{13}$/.test(name)) {
        throw new MigrationError(`migration ${name} in ${entry} has no 13-digit timestamp at the end of its class name`, db);
      }
      loaded.push({
        name, timestamp, migration, migrationClass,
        file: path.relative(PROJECT_ROOT, full),
        checksum: checksumOf(fs.readFileSync(full, "utf8")),
      });
    }
  }
  return loaded.sort((a, b) => a.timestamp - b.timestamp || a.name.localeCompare(b.name));
}
