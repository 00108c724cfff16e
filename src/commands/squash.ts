// migration:squash: replaces the applied migrations of one database, up to a name (default: all
// applied), with one migration built from the schema and rows they produce (schema/squash.ts). The
// configured database must have applied every one of them; under the deploy lock its history is
// rewritten to the squash (runner/squashed.ts), the new file is written and the squashed files are
// removed (version control keeps them). Other environments are rewritten by their next migration:run.
import * as fs from "fs";
import * as path from "path";
import type { Config } from "../config";
import type { DbName } from "../databases";
import { MigrationError, UsageError } from "../errors";
import { checkExists, checkIntegrity, withLockedStates } from "../deploy/plan";
import { baseName, checksumOf, findMigrations, loadMigrationFiles, migrationsDir } from "../runner/migration-files";
import { rewriteToSquash } from "../runner/squashed";
import type { LockWait } from "../runner/locks";
import { newRunId } from "../run-id";
import { renderSquash, squashName, squashSql } from "../schema/squash";
import { PROJECT_ROOT } from "../paths";

export interface SquashOptions {
  /** The last migration to squash (class, generate name or file name); default: the last applied. */
  to?: string;
  shadowUrl?: string;
  lockTimeoutMs: number;
  onWait?: LockWait;
}

export interface SquashReport {
  command: "squash";
  runId: string;
  db: DbName;
  /** The new migration: class name and file (relative to the project root). */
  squash: { name: string; file: string; statements: number };
  /** The migrations it replaces, oldest first; their files were removed. */
  replaced: string[];
}

/**
 * Squashes the applied migrations of `db` up to `options.to` into one.
 *
 * @example await squashMigrations(config, "apidb", { to: "AddBirthDate", lockTimeoutMs: 60000 })
 */
export async function squashMigrations(config: Config, db: DbName, options: SquashOptions): Promise<SquashReport> {
  const runId = newRunId();
  return withLockedStates(config, [db], { runId, lockTimeoutMs: options.lockTimeoutMs, onWait: options.onWait }, async (states) => {
    const state = states.find((s) => s.db === db)!;
    checkExists(state);
    checkIntegrity(state);
    if (state.squashAdoptions.length) {
      throw new MigrationError(`its history still names the migrations ${state.squashAdoptions[0].squash.name} replaces: run migration:run first (it rewrites the history), then squash`, db);
    }
    const applied = new Set(state.applied.map((a) => a.name));
    const appliedFiles = state.files.filter((f) => applied.has(f.name));
    if (!appliedFiles.length) throw new UsageError(`nothing is applied in database "${state.target.database}": there is nothing to squash`, db);
    const last = options.to ? findMigrations(state.files, options.to, db)[0] : appliedFiles[appliedFiles.length - 1];
    const chosen = state.files.filter((f) => f.timestamp <= last.timestamp);
    const behind = chosen.filter((f) => !applied.has(f.name));
    if (behind.length) {
      const names = behind.length > 5 ? `${behind.slice(0, 5).map((f) => f.name).join(", ")} and ${behind.length - 5} more` : behind.map((f) => f.name).join(", ");
      throw new MigrationError(`database "${state.target.database}" has not applied ${names} (squashing up to ${last.name}): squash only what every environment has applied (migration:show --all-envs tells which)`, db);
    }
    if (chosen.length < 2) throw new UsageError(`only ${chosen[0].name} is up to ${last.name}: nothing to squash`, db);

    const sql = await squashSql(state.target, chosen, { shadowUrl: options.shadowUrl, connectTimeoutMs: config.connectTimeoutMs });
    const name = squashName(last);
    const dir = migrationsDir(config.migrationsDir, db);
    const file = path.join(dir, `${last.timestamp}-Squash${baseName(last)}.ts`);
    if (chosen.some((f) => f.path === file)) throw new MigrationError(`${path.basename(file)} is already one of the migrations to squash: squash up to a later one`, db);
    fs.writeFileSync(file, renderSquash(db, name, chosen.map((f) => f.name), sql));
    try {
      const squash = loadMigrationFiles(config.migrationsDir, db).find((f) => f.name === name);
      if (!squash || squash.checksum !== checksumOf(fs.readFileSync(file, "utf8"))) throw new MigrationError(`${file}: the squash file did not read back as ${name}`, db);
      const replaced = state.applied.filter((a) => chosen.some((f) => f.name === a.name));
      await rewriteToSquash(state.dataSource, { squash, replaced }, state.history, runId, "migration:squash");
    } catch (error) {
      fs.rmSync(file, { force: true });
      throw error;
    }
    for (const f of chosen) fs.rmSync(f.path, { force: true });
    return {
      command: "squash", runId, db,
      squash: { name, file: path.relative(PROJECT_ROOT, file), statements: sql.up.length },
      replaced: chosen.map((f) => f.name),
    };
  });
}
