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

function statement(q: SqlQuery): string {
  const params = q.parameters?.length ? `, ${JSON.stringify(q.parameters)}` : "";
  return `        await queryRunner.query(\`${literal(q.query)}\`${params});`;
}

export function renderMigration(className: string, up: SqlQuery[], down: SqlQuery[]): string {
  return `import { MigrationInterface, QueryRunner } from "typeorm";

export class ${className} implements MigrationInterface {
    name = "${className}";

    public async up(queryRunner: QueryRunner): Promise<void> {
${up.map(statement).join("\n")}
    }

    public async down(queryRunner: QueryRunner): Promise<void> {
${down.map(statement).join("\n")}
    }
}
`;
}
