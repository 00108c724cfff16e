import { Column, CreateDateColumn, Entity, PrimaryGeneratedColumn, Unique, UpdateDateColumn } from "typeorm";

// LangChain's PGVector store table. Its key defaults to gen_random_uuid() (set in the migration;
// TypeORM reads either uuid function as "generated").
@Entity({ name: "langchain_pg_collection" })
@Unique("langchain_pg_collection_name_key", ["name"])
export class LangchainCollection {
  @PrimaryGeneratedColumn("uuid", { primaryKeyConstraintName: "langchain_pg_collection_pkey" })
  uuid: string;

  @Column("varchar", { length: 255 })
  name: string;

  @Column("jsonb", { nullable: true, default: () => "'{}'" })
  cmetadata: unknown;

  @CreateDateColumn({ name: "created_at", type: "timestamptz", nullable: true })
  createdAt: Date | null;

  @UpdateDateColumn({ name: "updated_at", type: "timestamptz", nullable: true })
  updatedAt: Date | null;
}
