import { Column, CreateDateColumn, Entity, Index, PrimaryGeneratedColumn, Unique, UpdateDateColumn } from "typeorm";

@Entity({ name: "profiles" })
@Unique("profiles_user_id_key", ["userId"])
@Index("idx_profiles_user_id", ["userId"])
export class Profile {
  @PrimaryGeneratedColumn("uuid", { primaryKeyConstraintName: "profiles_pkey" })
  id: string;

  // authdb.users.id: another database, so no foreign key.
  @Column("uuid", { name: "user_id" })
  userId: string;

  @Column("text", { nullable: true })
  name: string | null;

  @Column("text", { nullable: true })
  address: string | null;

  @Column("text", { nullable: true })
  phone: string | null;

  @CreateDateColumn({ name: "created_at", type: "timestamp" })
  createdAt: Date;

  @UpdateDateColumn({ name: "updated_at", type: "timestamp" })
  updatedAt: Date;

  @Column("text", { name: "first_name", nullable: true })
  firstName: string | null;

  @Column("text", { name: "last_name", nullable: true })
  lastName: string | null;
}
