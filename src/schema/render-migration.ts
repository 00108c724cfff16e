// Writes a migration file in the shape TypeORM's CLI writes them.
import { UsageError } from "../errors";
import type { SqlQuery } from "./diff";

export function checkMigrationName(name: string | undefined): asserts name is string {
  if (!name) throw new UsageError("a migration name is required, e.g. `npm run migration:generate -- AddBirthDate`");
  if (!/^[A-Za-z][A-Za-z0-9]*$/.test(name)) throw new UsageError(`migration name "${name}" must be letters and digits, starting with a letter (PascalCase)`);
}

function literal(sql: string): string {
  return sql.replace(/\\/g, "\\\\").replace(/`/g, "\\`").replace(/\$\{/g, "\\${");
}

/** A statement of the file; `comment` (lines) is written above it. */
export interface RenderedStatement extends SqlQuery {
  comment?: string;
}

function statement(q: RenderedStatement): string {
  const params = q.parameters?.length ? `, ${JSON.stringify(q.parameters)}` : "";
  const comment = q.comment ? q.comment.split("\n").map((line) => `        // ${line}\n`).join("") : "";
  return `${comment}        await queryRunner.query(\`${literal(q.query)}\`${params});`;
}

export interface RenderOptions {
  /** false: the class declares `transaction = false` (the runner runs it outside a transaction). */
  transaction?: boolean;
  /** Comment lines above the class. */
  header?: string[];
  /** Lint findings the migration accepts, rule -> reason (written as `lint = { ignore: ... }`). */
  lintIgnore?: Record<string, string>;
}

/**
 * A migration file in the shape TypeORM's CLI writes them.
 *
 *   renderMigration("AddIndex1795600000001", [{ query: `CREATE INDEX CONCURRENTLY ...` }], [...], { transaction: false })
 */
export function renderMigration(className: string, up: RenderedStatement[], down: RenderedStatement[], options: RenderOptions = {}): string {
  const header = (options.header ?? []).map((line) => `// ${line}`.trimEnd() + "\n").join("");
  const transaction = options.transaction === false ? "    transaction = false;\n" : "";
  const ignore = Object.entries(options.lintIgnore ?? {});
  const lint = ignore.length ? `    lint = { ignore: { ${ignore.map(([rule, reason]) => `${JSON.stringify(rule)}: ${JSON.stringify(reason)}`).join(", ")} } };\n` : "";
  return `${header}import { MigrationInterface, QueryRunner } from "typeorm";

export class ${className} implements MigrationInterface {
    name = "${className}";
${transaction}${lint}
    public async up(queryRunner: QueryRunner): Promise<void> {
${up.map(statement).join("\n")}
    }

    public async down(queryRunner: QueryRunner): Promise<void> {
${down.map(statement).join("\n")}
    }
}
`;
}
