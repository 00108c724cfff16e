import { Column, CreateDateColumn, Entity, Index, PrimaryGeneratedColumn, Unique, UpdateDateColumn } from "typeorm";

@Entity({ name: "users" })
@Unique("users_email_key", ["email"])
@Index("idx_users_email", ["email"])
export class User {
  @PrimaryGeneratedColumn("uuid", { primaryKeyConstraintName: "users_pkey" })
  id: string;

  @Column("text")
  email: string;

  @Column("text", { name: "password_hash" })
  passwordHash: string;

  // Legacy: ARRAY['user']. TypeORM cannot read that default back, so the entity and every
  // migration after the first use the same value written as '{user}'.
  @Column("text", { array: true, default: () => "'{user}'" })
  roles: string[];

  @CreateDateColumn({ name: "created_at", type: "timestamp" })
  createdAt: Date;

  @UpdateDateColumn({ name: "updated_at", type: "timestamp" })
  updatedAt: Date;

  @Column("boolean", { name: "is_active", nullable: true, default: true })
  isActive: boolean | null;

  @Column("integer", { name: "login_attempts", nullable: true, default: 0 })
  loginAttempts: number | null;

  @Column("timestamp", { name: "last_login_at", nullable: true })
  lastLoginAt: Date | null;

  @Column("timestamp", { name: "locked_until", nullable: true })
  lockedUntil: Date | null;
}
