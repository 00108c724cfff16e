import { Column, CreateDateColumn, Entity, Index, PrimaryGeneratedColumn, Unique, UpdateDateColumn } from "typeorm";

@Entity({ name: "system_settings" })
@Unique("system_settings_key_key", ["key"])
@Index("idx_system_settings_key", ["key"])
export class SystemSetting {
  @PrimaryGeneratedColumn("uuid", { primaryKeyConstraintName: "system_settings_pkey" })
  id: string;

  @Column("varchar")
  key: string;

  @Column("json")
  value: unknown;

  @CreateDateColumn({ name: "created_at", type: "timestamp" })
  createdAt: Date;

  @UpdateDateColumn({ name: "updated_at", type: "timestamp" })
  updatedAt: Date;
}
