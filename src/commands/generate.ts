// migration:generate: TypeORM's diff of entities against each (up-to-date) database, written as a
// timestamped migration only where there is a difference. --check writes nothing and reports.
import * as fs from "fs";
import * as path from "path";
import type { Config } from "../config";
import type { DbName } from "../databases";
import { MigrationError } from "../errors";
import { migrationsDir } from "../runner/migration-files";
import { checkExists, closeStates, readStates } from "../deploy/plan";
import { schemaDiff, SqlQuery } from "../schema/diff";
import { checkMigrationName, renderMigration } from "../schema/render-migration";

export interface DbGenerateResult {
  db: DbName;
  changed: boolean;
  up: string[];
  file?: string;
}

export interface GenerateReport {
  command: "generate";
  databases: DbGenerateResult[];
}

export async function generateMigrations(
  config: Config,
  options: { name?: string; dbs: DbName[]; check?: boolean; timestamp?: number },
): Promise<GenerateReport> {
  if (!options.check) checkMigrationName(options.name);
  const timestamp = options.timestamp ?? Date.now();
  const states = await readStates(config, options.dbs);
  try {
    // Every database is checked and diffed before any file is written: all or nothing.
    for (const s of states) {
      checkExists(s);
      if (s.pending.length) {
        throw new MigrationError(`${s.pending.length} migration(s) pending (${s.pending[0].name}...): run \`npm run migration:run\` first so the diff is against the current schema`, s.db);
      }
    }
    const diffs = await Promise.all(states.map((s) => schemaDiff(s.dataSource)));
    const written: string[] = [];
    try {
      const databases = states.map((s, i): DbGenerateResult => {
        const diff = diffs[i];
        const result: DbGenerateResult = { db: s.db, changed: diff.up.length > 0, up: diff.up.map((q: SqlQuery) => q.query) };
        if (result.changed && !options.check) {
          const file = path.join(migrationsDir(config.migrationsDir, s.db), `${timestamp}-${options.name}.ts`);
          fs.mkdirSync(path.dirname(file), { recursive: true });
          fs.writeFileSync(file, renderMigration(`${options.name}${timestamp}`, diff.up, diff.down), { flag: "wx" });
          written.push(file);
          result.file = path.relative(process.cwd(), file);
        }
        return result;
      });
      return { command: "generate", databases };
    } catch (error) {
      for (const file of written) fs.rmSync(file, { force: true }); // all or nothing
      throw new MigrationError(`writing the migration failed: ${(error as Error).message}`);
    }
  } finally {
    await closeStates(states);
  }
}
