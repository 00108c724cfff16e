import { Column, CreateDateColumn, Entity, Index, PrimaryGeneratedColumn } from "typeorm";

@Entity({ name: "system_logs" })
@Index("idx_system_logs_service", ["serviceName"])
@Index("idx_system_logs_level", ["level"])
@Index("idx_system_logs_created_at", ["createdAt"])
export class SystemLog {
  @PrimaryGeneratedColumn("uuid", { primaryKeyConstraintName: "system_logs_pkey" })
  id: string;

  @Column("varchar", { name: "service_name" })
  serviceName: string;

  @Column("varchar")
  level: string;

  @Column("text")
  message: string;

  @Column("json", { name: "log_metadata", nullable: true })
  logMetadata: unknown;

  @CreateDateColumn({ name: "created_at", type: "timestamp" })
  createdAt: Date;
}
