// TypeORM's own comparison of entities with a live database: exactly what
// `typeorm migration:generate` (and its --check) would write.
import type { DataSource } from "typeorm";

export interface SchemaDiff {
  up: string[];
  down: string[];
}

export interface SqlQuery {
  query: string;
  parameters?: unknown[];
}

export async function schemaDiff(dataSource: DataSource): Promise<{ up: SqlQuery[]; down: SqlQuery[] }> {
  const sql = await dataSource.driver.createSchemaBuilder().log();
  // TypeORM lists down queries in apply order of the up queries; a down runs them in reverse.
  return { up: sql.upQueries, down: [...sql.downQueries].reverse() };
}
