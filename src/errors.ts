import type { DbName } from "./databases";

/** Exit codes of every command (DESIGN.md): 0 done, 1 failed or drift found, 2 bad usage or configuration. */
export const EXIT = { ok: 0, failed: 1, usage: 2 } as const;

/** An error meant for the user: one line, naming the database when there is one. */
export class MigrationError extends Error {
  constructor(
    message: string,
    readonly db?: DbName,
    readonly exitCode: number = EXIT.failed,
  ) {
    super(message);
    this.name = "MigrationError";
  }

  /** The single line the CLI prints: `apidb: password authentication failed for user "mig"`. */
  get line(): string {
    return this.db ? `${this.db}: ${this.message}` : this.message;
  }
}

/** Bad usage or configuration (exit 2). */
export class UsageError extends MigrationError {
  constructor(message: string, db?: DbName) {
    super(message, db, EXIT.usage);
    this.name = "UsageError";
  }
}
