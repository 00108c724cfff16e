// A copy of the project's migrations in a temp folder, to which a test adds its own migrations.
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { MIGRATIONS_ROOT } from "../../src/config";
import type { DbName } from "../../src/databases";

export interface MigrationsCopy {
  root: string;
  add(db: DbName, name: string, timestamp: number, up: string, down?: string): string;
  /** A migration whose up/down bodies are TypeScript statements using `queryRunner`. */
  addCode(db: DbName, name: string, timestamp: number, up: string, down: string): string;
  remove(): void;
}

export function copyMigrations(): MigrationsCopy {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), "aimig-migrations-"));
  fs.cpSync(MIGRATIONS_ROOT, root, { recursive: true });
  return {
    root,
    add(db, name, timestamp, up, down = "") {
      const file = path.join(root, db, `${timestamp}-${name}.ts`);
      fs.writeFileSync(file, `import { MigrationInterface, QueryRunner } from "typeorm";

export class ${name}${timestamp} implements MigrationInterface {
    public async up(queryRunner: QueryRunner): Promise<void> {
        await queryRunner.query(${JSON.stringify(up)});
    }

    public async down(queryRunner: QueryRunner): Promise<void> {
${down ? `        await queryRunner.query(${JSON.stringify(down)});` : ""}
    }
}
`);
      return file;
    },
    addCode(db, name, timestamp, up, down) {
      const file = path.join(root, db, `${timestamp}-${name}.ts`);
      fs.writeFileSync(file, `import { MigrationInterface, QueryRunner } from "typeorm";

export class ${name}${timestamp} implements MigrationInterface {
    public async up(queryRunner: QueryRunner): Promise<void> {
        ${up}
    }

    public async down(queryRunner: QueryRunner): Promise<void> {
        ${down}
    }
}
`);
      return file;
    },
    remove: () => fs.rmSync(root, { recursive: true, force: true }),
  };
}
