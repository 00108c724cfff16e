// Anything that runs SQL: a pg Client (returns { rows }) or a TypeORM DataSource / QueryRunner
// (returns the rows). Lets the bookkeeping and catalog code serve both.
export interface Queryable {
  query(sql: string, params?: unknown[]): Promise<unknown>;
}

export async function rows<T>(q: Queryable, sql: string, params?: unknown[]): Promise<T[]> {
  const result = (await q.query(sql, params)) as { rows?: T[] } | T[];
  return Array.isArray(result) ? result : (result.rows ?? []);
}
