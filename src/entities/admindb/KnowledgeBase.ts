import { Column, CreateDateColumn, Entity, Index, PrimaryGeneratedColumn, UpdateDateColumn } from "typeorm";

// Defaults are written the way TypeORM reads them back (casts cut off), so `generate` stays quiet.
@Entity({ name: "knowledge_bases" })
@Index("idx_knowledge_bases_user_id", ["userId"])
@Index("idx_knowledge_bases_status", ["status"])
@Index("idx_knowledge_bases_category", ["category"])
@Index("idx_knowledge_bases_tags", ["tags"], { type: "gin" })
export class KnowledgeBase {
  @PrimaryGeneratedColumn("uuid", { primaryKeyConstraintName: "knowledge_bases_pkey" })
  id: string;

  @Column("varchar")
  name: string;

  @Column("text", { nullable: true })
  description: string | null;

  @Column("json", { default: () => "'[]'" })
  permissions: unknown;

  @Column("text", { nullable: true })
  prompt: string | null;

  @Column("uuid", { name: "user_id" })
  userId: string;

  @Column("varchar", { default: "active" })
  status: string;

  @Column("boolean", { name: "is_public", default: false })
  isPublic: boolean;

  @Column("integer", { name: "document_count", default: 0 })
  documentCount: number;

  @Column("bigint", { name: "storage_size", default: 0 })
  storageSize: string;

  @Column("timestamp", { name: "last_accessed_at", nullable: true })
  lastAccessedAt: Date | null;

  @Column("json", { name: "processing_settings", nullable: true, default: () => "'{}'" })
  processingSettings: unknown;

  @Column("json", { name: "search_settings", nullable: true, default: () => "'{}'" })
  searchSettings: unknown;

  @Column("text", { array: true, nullable: true, default: () => "'{}'" })
  tags: string[] | null;

  @Column("varchar", { nullable: true })
  category: string | null;

  @Column("integer", { default: 1 })
  version: number;

  @CreateDateColumn({ name: "created_at", type: "timestamp" })
  createdAt: Date;

  @UpdateDateColumn({ name: "updated_at", type: "timestamp" })
  updatedAt: Date;
}
