// The expand and contract migration files of one change set, as `migration:generate` writes them:
// same name, consecutive timestamps; the contract declares `phase = "contract"` so migration:run
// holds it back for migration:complete. The files hold the changes as data and call the operations
// (src/evolve/operations.ts) by the fixed module name the loader resolves wherever the file lives.
import { HELPERS_MODULE } from "../runner/migration-files";
import type { EvolveChange } from "./change";

export interface EvolveFile {
  className: string;
  timestamp: number;
  phase: "expand" | "contract";
  /** The whole .ts file. */
  text: string;
}

function describe(change: EvolveChange): string {
  switch (change.kind) {
    case "rename-column":
      return `${change.table}.${change.from} -> ${change.table}.${change.to} (rename, ${change.type})`;
    case "change-type":
      return `${change.table}.${change.column}: ${change.fromType} -> ${change.toType} (type change, no rewrite)`;
    case "drop-column":
      return `${change.table}.${change.column} dropped (${change.type})`;
  }
}

/** Why each squawk finding of the phase's SQL is safe here (lint.ignore). */
function lintReasons(phase: "expand" | "contract", changes: EvolveChange[]): Record<string, string> {
  const out: Record<string, string> = {};
  if (phase === "expand") {
    out["prefer-robust-stmts"] = "each step is one short transaction of its own, retried, and safe to run again (IF NOT EXISTS, CREATE OR REPLACE, a resumable backfill)";
    out["ban-drop-column"] = "down only: drops the column this expand added; the trigger kept every value in the old one";
    out["adding-field-with-default"] = "the new column is added without a default (no rewrite)";
  } else {
    out["ban-drop-column"] = changes.every((c) => c.kind === "drop-column")
      ? "named with --drop: the column stayed until migration:complete, after the new version (which does not use it) was deployed"
      : "expand/contract: every row was verified equal in the new column before the old one is dropped, and no client wrote the old name for MIGRATION_CONTRACT_IDLE";
    out["prefer-robust-stmts"] = "each step is one short transaction of its own, retried, and safe to run again";
    if (changes.some((c) => c.kind === "change-type")) out["renaming-column"] = "expand/contract: the new-typed column takes the old name once no client uses the old one";
    if (changes.some((c) => c.notNull)) out["adding-not-nullable-field"] = "SET NOT NULL uses the CHECK validated in the expand: no table scan";
  }
  return out;
}

function fileText(name: string, timestamp: number, phase: "expand" | "contract", changes: EvolveChange[]): string {
  const className = `${name}${timestamp}`;
  const [up, down] = phase === "expand" ? ["expand", "undoExpand"] : ["contract", "undoContract"];
  const header = phase === "expand"
    ? `// Expand phase of ${name}: migration:run applies it while the old services still run; the\n// contract (phase = "contract", ${name}${timestamp + 1}) waits for migration:complete, after the\n// new version is deployed and healthy. Old and new columns are kept equal by a trigger.`
    : `// Contract phase of ${name}: held back by migration:run; migration:complete applies it once the\n// new version is live and no client has written the old names for MIGRATION_CONTRACT_IDLE.\n// It verifies every row first; its down brings the old columns back, filled.`;
  const ignore = Object.entries(lintReasons(phase, changes)).map(([rule, reason]) => `            ${JSON.stringify(rule)}: ${JSON.stringify(reason)},`).join("\n");
  return `${header}
//   ${changes.map(describe).join("\n//   ")}
import { MigrationInterface, QueryRunner } from "typeorm";
import { EvolveChange, ${up}, ${down} } from "${HELPERS_MODULE}";

const changes: EvolveChange[] = ${JSON.stringify(changes, null, 4).replace(/^(\s*)"(\w+)":/gm, "$1$2:")};

export class ${className} implements MigrationInterface {
    name = "${className}";
    phase = "${phase}";
    // Short transactions of its own: DDL steps, backfill batches, concurrent index builds.
    transaction = false;
    evolve = changes;
    lint = {
        ignore: {
${ignore}
        },
    };

    public async up(queryRunner: QueryRunner): Promise<void> {
        await ${up}(queryRunner, changes);
    }

    public async down(queryRunner: QueryRunner): Promise<void> {
        await ${down}(queryRunner, changes);
    }
}
`;
}

/**
 * The expand migration at `timestamp` and the contract one at `timestamp + 1` (a change set of
 * dropped columns only: the contract alone, at `timestamp`).
 *
 * @example renderEvolveMigrations("RenamePhone", 1796000000000, [{ kind: "rename-column", table: "profiles", from: "phone", to: "phone_number", type: "text", notNull: false }])
 */
export function renderEvolveMigrations(name: string, timestamp: number, changes: EvolveChange[]): EvolveFile[] {
  if (!changes.length) return [];
  const dropsOnly = changes.every((c) => c.kind === "drop-column");
  const files: EvolveFile[] = [];
  if (!dropsOnly) files.push({ className: `${name}${timestamp}`, timestamp, phase: "expand", text: fileText(name, timestamp, "expand", changes) });
  const at = dropsOnly ? timestamp : timestamp + 1;
  files.push({ className: `${name}${at}`, timestamp: at, phase: "contract", text: fileText(name, at, "contract", changes) });
  return files;
}
