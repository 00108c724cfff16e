import { Column, CreateDateColumn, Entity, Index, PrimaryGeneratedColumn } from "typeorm";

@Entity({ name: "login_logs" })
@Index("idx_login_logs_user_id", ["userId"])
@Index("idx_login_logs_created_at", ["createdAt"])
export class LoginLog {
  @PrimaryGeneratedColumn("uuid", { primaryKeyConstraintName: "login_logs_pkey" })
  id: string;

  // authdb.users.id: another database, so no foreign key.
  @Column("uuid", { name: "user_id" })
  userId: string;

  @Column("varchar", { name: "ip_address", nullable: true })
  ipAddress: string | null;

  @Column("boolean")
  success: boolean;

  @CreateDateColumn({ name: "created_at", type: "timestamp" })
  createdAt: Date;
}
