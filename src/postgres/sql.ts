// Anything that runs SQL: a pg Client (returns { rows }) or a TypeORM DataSource / QueryRunner
// (returns the rows). Lets the bookkeeping and catalog code serve both.
export interface Queryable {
  query(sql: string, params?: unknown[]): Promise<unknown>;
}

export async function rows<T>(q: Queryable, sql: string, params?: unknown[]): Promise<T[]> {
  const result = (await q.query(sql, params)) as { rows?: T[] } | T[];
  return Array.isArray(result) ? result : (result.rows ?? []);
}

/** A quoted SQL identifier: `a"b` becomes `"a""b"`. */
export function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

/** Whether `public.<table>` exists. */
export async function tableExists(q: Queryable, table: string): Promise<boolean> {
  const [row] = await rows<{ present: boolean }>(q, `SELECT to_regclass($1) IS NOT NULL AS present`, [`public.${quoteIdent(table)}`]);
  return row.present === true;
}

/**
 * Waits for every promise, then throws the first rejection in the given order (so the error
 * reported does not depend on timing), after `onFailure` has seen what did succeed.
 */
export async function settleAll<T>(promises: Array<Promise<T>>, onFailure?: (succeeded: T[]) => Promise<void>): Promise<T[]> {
  const settled = await Promise.allSettled(promises);
  const failed = settled.find((s): s is PromiseRejectedResult => s.status === "rejected");
  const values = settled.flatMap((s) => (s.status === "fulfilled" ? [s.value] : []));
  if (failed) {
    await onFailure?.(values);
    throw failed.reason;
  }
  return values;
}
