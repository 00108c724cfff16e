import { Column, CreateDateColumn, Entity, Index, JoinColumn, ManyToOne, PrimaryGeneratedColumn, UpdateDateColumn } from "typeorm";
import { Document } from "./Document";
import { LangchainCollection } from "./LangchainCollection";

@Entity({ name: "langchain_pg_embedding" })
@Index("langchain_pg_embedding_collection_id_idx", ["collectionId"])
@Index("langchain_pg_embedding_custom_id_idx", ["customId"])
@Index("langchain_pg_embedding_document_id_idx", ["documentId"])
export class LangchainEmbedding {
  @PrimaryGeneratedColumn("uuid", { primaryKeyConstraintName: "langchain_pg_embedding_pkey" })
  uuid: string;

  @Column("uuid", { name: "collection_id", nullable: true })
  collectionId: string | null;

  @ManyToOne(() => LangchainCollection, { onDelete: "CASCADE", nullable: true })
  @JoinColumn({ name: "collection_id", foreignKeyConstraintName: "langchain_pg_embedding_collection_id_fkey" })
  collection: LangchainCollection | null;

  @Column("vector", { length: 768, nullable: true })
  embedding: string | null;

  @Column("text")
  document: string;

  @Column("jsonb", { nullable: true, default: () => "'{}'" })
  cmetadata: unknown;

  @Column("varchar", { name: "custom_id", length: 255, nullable: true })
  customId: string | null;

  @Column("uuid", { name: "document_id", nullable: true })
  documentId: string | null;

  @ManyToOne(() => Document, { onDelete: "CASCADE", nullable: true })
  @JoinColumn({ name: "document_id", foreignKeyConstraintName: "langchain_pg_embedding_document_id_fkey" })
  sourceDocument: Document | null;

  @Column("integer", { name: "chunk_index", nullable: true, default: 0 })
  chunkIndex: number | null;

  @CreateDateColumn({ name: "created_at", type: "timestamptz", nullable: true })
  createdAt: Date | null;

  @UpdateDateColumn({ name: "updated_at", type: "timestamptz", nullable: true })
  updatedAt: Date | null;
}
