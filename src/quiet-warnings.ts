// TypeORM's schema reader sends concurrent queries on one pg client, which pg 8.x answers with a
// deprecation warning on every `generate`. It is TypeORM's to fix and says nothing to our users.
const original = process.emitWarning.bind(process);
process.emitWarning = ((warning: string | Error, ...rest: unknown[]) => {
  const text = typeof warning === "string" ? warning : warning.message;
  if (text.includes("client is already executing a query")) return;
  return (original as (...args: unknown[]) => void)(warning, ...rest);
}) as typeof process.emitWarning;
