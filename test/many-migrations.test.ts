// Many pending migrations at once (200): each still applied in its own transaction with its
// bookkeeping, in order, with its checksum on record; a syntax error in one of them stops the run in
// its plan with its file, line and column (TypeScript's diagnostic); a migration requiring a
// TypeScript helper of its own still loads; one written with TypeScript-only syntax (an enum, a
// generic, `as const`, class fields), one with a decorator and one with a namespace (both compiled by
// TypeScript, not sucrase: src/runner/compile.ts) run as written. Never timed.
import * as fs from "fs";
import * as path from "path";
import { readApplied, readHistory } from "../src/runner/history";
import { checksumOf } from "../src/runner/migration-files";
import { runCli } from "./support/cli";
import { testDatabases, withClient } from "./support/databases";
import { copyMigrations, MigrationsCopy } from "./support/migrations-dir";

jest.setTimeout(600_000);

const COUNT = 200;
const T0 = 1796000000000;

describe("200 pending migrations in one run", () => {
  const dbs = testDatabases("many");
  let copy: MigrationsCopy;
  const env = () => ({ ...dbs.env, MIGRATIONS_DIR: copy.root });
  const names: string[] = [];

  beforeAll(() => {
    copy = copyMigrations();
    fs.mkdirSync(path.join(copy.root, "helpers"));
    fs.writeFileSync(path.join(copy.root, "helpers", "table-name.ts"), `export const tableName = (i: number): string => \`many_\${i}\`;\n`);
    for (let i = 1; i <= COUNT; i++) {
      const name = `Many${i}`;
      if (i === 100) {
        // Requires a TypeScript module of its own: resolved from the migration's folder, compiled on the fly.
        copy.addCode("apidb", name, T0 + i, `const { tableName } = require("../helpers/table-name");\n        await queryRunner.query(\`CREATE TABLE "\${tableName(${i})}" (id int PRIMARY KEY)\`);`, `await queryRunner.query(\`DROP TABLE many_${i}\`);`);
      } else if (i === 120) {
        const file = path.join(copy.root, "apidb", `${T0 + i}-${name}.ts`);
        fs.writeFileSync(file, `import { MigrationInterface, QueryRunner } from "typeorm";

enum Kind { Plain = "many", Other = "other" }
const label = <T extends string>(k: T, n: number): \`\${T}_\${number}\` => \`\${k}_\${n}\` as const;

export class ${name}${T0 + i} implements MigrationInterface {
    timeouts = { statementTimeout: "1min" } as const;
    private readonly table: string = label(Kind.Plain, ${i});
    declare unused?: number;

    public async up(queryRunner: QueryRunner): Promise<void> {
        await queryRunner.query(\`CREATE TABLE "\${this.table}" (id int PRIMARY KEY, note text DEFAULT '\${this.timeouts?.statementTimeout ?? "none"}')\`);
    }

    public async down(queryRunner: QueryRunner): Promise<void> {
        await queryRunner.query(\`DROP TABLE "\${this.table}"\`);
    }
}
`);
      } else if (i === 130) {
        const file = path.join(copy.root, "apidb", `${T0 + i}-${name}.ts`);
        fs.writeFileSync(file, `import { MigrationInterface, QueryRunner } from "typeorm";

function logged(_target: object, _key: string, descriptor: PropertyDescriptor): void {
    const original = descriptor.value;
    descriptor.value = function (this: unknown, ...args: unknown[]) { return original.apply(this, args); };
}

export class ${name}${T0 + i} implements MigrationInterface {
    @logged
    public async up(queryRunner: QueryRunner): Promise<void> {
        await queryRunner.query("CREATE TABLE many_${i} (id int PRIMARY KEY)");
    }

    public async down(queryRunner: QueryRunner): Promise<void> {
        await queryRunner.query("DROP TABLE many_${i}");
    }
}
`);
      } else if (i === 140) {
        // A namespace with values: compiled by TypeScript (sucrase would take it for types and drop it).
        const file = path.join(copy.root, "apidb", `${T0 + i}-${name}.ts`);
        fs.writeFileSync(file, `import { MigrationInterface, QueryRunner } from "typeorm";

namespace Tables {
    export const name = "many_${i}";
}

export class ${name}${T0 + i} implements MigrationInterface {
    public async up(queryRunner: QueryRunner): Promise<void> {
        await queryRunner.query(\`CREATE TABLE \${Tables.name} (id int PRIMARY KEY)\`);
    }

    public async down(queryRunner: QueryRunner): Promise<void> {
        await queryRunner.query(\`DROP TABLE \${Tables.name}\`);
    }
}
`);
      } else {
        copy.add("apidb", name, T0 + i, `CREATE TABLE many_${i} (id int PRIMARY KEY)`, `DROP TABLE many_${i}`);
      }
      names.push(`${name}${T0 + i}`);
    }
  });
  afterAll(async () => {
    copy.remove();
    await dbs.drop();
  });

  it("a syntax error in one of them stops the run in its plan, naming file, line and column; nothing is applied", async () => {
    const broken = path.join(copy.root, "apidb", `${T0 + 150}-Many150.ts`);
    const good = fs.readFileSync(broken, "utf8");
    fs.writeFileSync(broken, good.replace("public async up(queryRunner: QueryRunner): Promise<void> {", "public async up(queryRunner: QueryRunner): Promise<void> {\n        const = 1;"));
    try {
      const r = await runCli(["migration:run", "--no-backup"], env());
      expect(r.code).toBe(1);
      expect(r.stderr.trim().split("\n").pop()).toMatch(/^error: apidb: .*1796000000150-Many150\.ts:5:15: Variable declaration expected\.$/);
      const exists = await withClient("postgres", async (c) => (await c.query(`SELECT 1 FROM pg_database WHERE datname = $1`, [dbs.names.apidb])).rowCount);
      expect(exists).toBe(0);
    } finally {
      fs.writeFileSync(broken, good);
    }
  });

  it("applies all of them, each with its bookkeeping and checksum, in order; reverts the last ones", async () => {
    const r = await runCli(["migration:run", "--no-backup", "--json"], env());
    expect(r.code).toBe(0);
    const report = JSON.parse(r.stdout);
    const apidb = report.databases.find((d: { db: string }) => d.db === "apidb");
    expect(apidb.applied.map((s: { name: string }) => s.name)).toEqual(["Init1795519558038", ...names]);

    await withClient(dbs.names.apidb, async (c) => {
      expect((await readApplied(c)).map((a) => a.name)).toEqual(["Init1795519558038", ...names]);
      const history = await readHistory(c);
      expect(history.map((h) => h.name)).toEqual(["Init1795519558038", ...names]);
      expect(new Set(history.map((h) => h.runId)).size).toBe(1);
      const file = path.join(copy.root, "apidb", `${T0 + 100}-Many100.ts`);
      expect(history.find((h) => h.name === names[99])).toEqual(expect.objectContaining({ direction: "up", command: "migration:run", checksum: checksumOf(fs.readFileSync(file, "utf8")) }));
      const tables = await c.query(`SELECT count(*)::int AS n FROM pg_tables WHERE schemaname = 'public' AND tablename LIKE 'many\\_%'`);
      expect(tables.rows[0].n).toBe(COUNT);
      // The migration written with TypeScript-only syntax ran as written: its class fields were set.
      const note = await c.query(`SELECT column_default FROM information_schema.columns WHERE table_name = 'many_120' AND column_name = 'note'`);
      expect(note.rows[0].column_default).toBe("'1min'::text");
    });

    const revert = await runCli(["migration:revert", "--db", "apidb", "--steps", "3"], env());
    expect(revert.code).toBe(0);
    await withClient(dbs.names.apidb, async (c) => {
      expect((await readApplied(c)).map((a) => a.name)).toEqual(["Init1795519558038", ...names.slice(0, -3)]);
      const history = await readHistory(c);
      expect(history.slice(-3).map((h) => [h.name, h.direction])).toEqual(names.slice(-3).reverse().map((n) => [n, "down"]));
      expect((await c.query(`SELECT to_regclass('many_${COUNT}') AS t`)).rows[0].t).toBeNull();
    });
  });
});
