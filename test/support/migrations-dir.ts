// A copy of the project's migrations in a temp folder, to which a test adds its own migrations.
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { MIGRATIONS_ROOT } from "../../src/config";
import type { DbName } from "../../src/databases";
import { runCli } from "./cli";
import { testDatabases, TestDatabases } from "./databases";

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

/**
 * For a describe block: fresh databases migrated from a private copy of the migrations, to which
 * the tests add their own. Registers its own setup and cleanup.
 */
export function migratedWithCopy(label: string): { dbs: TestDatabases; copy: () => MigrationsCopy; env: () => Record<string, string> } {
  const dbs = testDatabases(label);
  let copy: MigrationsCopy | undefined;
  const env = () => ({ ...dbs.env, MIGRATIONS_DIR: copy!.root });
  beforeAll(async () => {
    copy = copyMigrations();
    const r = await runCli(["migration:run"], env());
    if (r.code !== 0) throw new Error(`setup migration:run failed: ${r.stderr}`);
  });
  afterAll(async () => {
    copy?.remove();
    await dbs.drop();
  });
  return { dbs, copy: () => copy!, env };
}
