// The three databases of the ai-micro server, in the order every command visits them.
export const DATABASES = ["authdb", "apidb", "admindb"] as const;
export type DbName = (typeof DATABASES)[number];

export function isDbName(value: string): value is DbName {
  return (DATABASES as readonly string[]).includes(value);
}

