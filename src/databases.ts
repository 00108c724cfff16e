// The three databases of the ai-micro server, in the order every command visits them.
export const DATABASES = ["authdb", "apidb", "admindb"] as const;
export type DbName = (typeof DATABASES)[number];

export function isDbName(value: string): value is DbName {
  return (DATABASES as readonly string[]).includes(value);
}

/** Extensions each database's migrations need; checked before anything changes. */
export const REQUIRED_EXTENSIONS: Record<DbName, string[]> = {
  authdb: ["uuid-ossp"],
  apidb: ["uuid-ossp"],
  admindb: ["uuid-ossp", "vector"],
};
