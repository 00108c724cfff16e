// users.roles defaults to ARRAY['user'] in the legacy schema. TypeORM reads that default back as
// "ARRAY['user'" (its cast-stripping regex eats the bracket), so no entity default can match it and
// every `generate` would propose a change. '{user}' is the same value in a form TypeORM reads back.
import { MigrationInterface, QueryRunner } from "typeorm";

export class NormalizeRolesDefault1795519600000 implements MigrationInterface {
    name = "NormalizeRolesDefault1795519600000";

    public async up(queryRunner: QueryRunner): Promise<void> {
        await queryRunner.query(`ALTER TABLE "users" ALTER COLUMN "roles" SET DEFAULT '{user}'`);
    }

    public async down(queryRunner: QueryRunner): Promise<void> {
        await queryRunner.query(`ALTER TABLE "users" ALTER COLUMN "roles" SET DEFAULT ARRAY['user']`);
    }
}
