// The three data sources of the ai-micro server, in deploy order. The TypeORM CLI wants one
// DataSource per file: point it at src/data-sources/<db>.ts; this file is for code and people.
export const dataSourceFiles = {
  authdb: "src/data-sources/authdb.ts",
  apidb: "src/data-sources/apidb.ts",
  admindb: "src/data-sources/admindb.ts",
} as const;
