import {
  Check, Column, CreateDateColumn, Entity, Index, JoinColumn, ManyToOne, PrimaryGeneratedColumn, UpdateDateColumn,
} from "typeorm";
import { KnowledgeBase } from "./KnowledgeBase";

@Entity({ name: "documents" })
@Check("check_owner", `"knowledge_base_id" IS NOT NULL OR "user_id" IS NOT NULL`)
@Index("idx_documents_kb_id", ["knowledgeBaseId"])
@Index("idx_documents_user_id", ["userId"])
@Index("idx_documents_status", ["status"])
@Index("idx_documents_filename", ["filename"])
@Index("idx_documents_category", ["category"])
@Index("idx_documents_tags", ["tags"], { type: "gin" })
@Index("idx_documents_is_public", ["isPublic"])
@Index("idx_documents_editing_status", ["editingStatus"])
@Index("idx_documents_last_edited_at", ["lastEditedAt"])
@Index("idx_documents_edited_by", ["editedBy"])
export class Document {
  @PrimaryGeneratedColumn("uuid", { primaryKeyConstraintName: "documents_pkey" })
  id: string;

  @Column("uuid", { name: "knowledge_base_id", nullable: true })
  knowledgeBaseId: string | null;

  @ManyToOne(() => KnowledgeBase, { onDelete: "CASCADE", nullable: true })
  @JoinColumn({ name: "knowledge_base_id", foreignKeyConstraintName: "documents_knowledge_base_id_fkey" })
  knowledgeBase: KnowledgeBase | null;

  @Column("varchar")
  filename: string;

  @Column("varchar", { name: "original_filename" })
  originalFilename: string;

  @Column("varchar", { name: "file_path" })
  filePath: string;

  @Column("varchar", { name: "processing_path", nullable: true })
  processingPath: string | null;

  @Column("varchar", { name: "mime_type" })
  mimeType: string;

  @Column("bigint", { name: "file_size" })
  fileSize: string;

  @Column("varchar", { default: "uploaded" })
  status: string;

  @Column("json", { name: "processing_metadata", nullable: true })
  processingMetadata: unknown;

  @Column("text", { name: "text_content", nullable: true })
  textContent: string | null;

  @Column("uuid", { name: "user_id", nullable: true })
  userId: string | null;

  @Column("boolean", { name: "is_public", nullable: true, default: false })
  isPublic: boolean | null;

  @Column("text", { array: true, nullable: true, default: () => "'{}'" })
  tags: string[] | null;

  @Column("varchar", { nullable: true })
  category: string | null;

  @Column("jsonb", { name: "original_metadata", nullable: true })
  originalMetadata: unknown;

  @Column("jsonb", { name: "edited_metadata", nullable: true })
  editedMetadata: unknown;

  @Column("varchar", { name: "editing_status", nullable: true, default: "unedited" })
  editingStatus: string | null;

  @Column("timestamp", { name: "last_edited_at", nullable: true })
  lastEditedAt: Date | null;

  @Column("uuid", { name: "edited_by", nullable: true })
  editedBy: string | null;

  @CreateDateColumn({ name: "created_at", type: "timestamp" })
  createdAt: Date;

  @UpdateDateColumn({ name: "updated_at", type: "timestamp" })
  updatedAt: Date;
}
