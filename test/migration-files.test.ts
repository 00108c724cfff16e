// Listing migration files: names, order, checksums (no database needed).
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { checksumOf, extensionsCreatedBy, loadMigrationFiles } from "../src/runner/migration-files";

function tempRoot(files: Record<string, string>): string {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), "aimig-files-"));
  for (const [name, text] of Object.entries(files)) {
    fs.mkdirSync(path.join(root, "apidb"), { recursive: true });
    fs.writeFileSync(path.join(root, "apidb", name), text);
  }
  return root;
}

const migration = (cls: string, body = "") => `import { MigrationInterface, QueryRunner } from "typeorm";
export class ${cls} implements MigrationInterface {
    public async up(queryRunner: QueryRunner): Promise<void> { ${body} }
    public async down(queryRunner: QueryRunner): Promise<void> {}
}
`;

describe("migration files", () => {
  it("checksums ignore line endings, nothing else", () => {
    expect(checksumOf("a\r\nb\r\n")).toBe(checksumOf("a\nb\n"));
    expect(checksumOf("a\nb\n")).not.toBe(checksumOf("a\nb \n"));
  });

  it("orders by the class name's timestamp, not by file name, and reads names without compiling", () => {
    const root = tempRoot({
      "b.ts": migration("Second1700000000002"),
      "a.ts": migration("Third1700000000003"),
      "c.ts": migration("First1700000000001", `await queryRunner.query("SELECT name = 'x' FROM t")`),
      // Not valid TypeScript: listing must not compile (only running does).
      "d.ts": migration("Fourth1700000000004", "this is ) not code"),
      "index.ts": "export {};",
    });
    const files = loadMigrationFiles(root, "apidb");
    expect(files.map((f) => f.name)).toEqual(["First1700000000001", "Second1700000000002", "Third1700000000003", "Fourth1700000000004"]);
    expect(files[0].timestamp).toBe(1700000000001);
    fs.rmSync(root, { recursive: true });
  });

  it("refuses a class name without a 13-digit timestamp, naming the file", () => {
    const root = tempRoot({ "x.ts": migration("AddThing") });
    expect(() => loadMigrationFiles(root, "apidb")).toThrow("migration AddThing in x.ts has no 13-digit timestamp at the end of its class name");
    fs.rmSync(root, { recursive: true });
  });

  it("finds the extensions a migration creates", () => {
    const root = tempRoot({ "a.ts": migration("A1700000000001", 'await queryRunner.query(`CREATE EXTENSION IF NOT EXISTS "vector"`); await queryRunner.query("create extension pg_trgm")') });
    expect(extensionsCreatedBy(loadMigrationFiles(root, "apidb")).sort()).toEqual(["pg_trgm", "vector"]);
    fs.rmSync(root, { recursive: true });
  });
});
