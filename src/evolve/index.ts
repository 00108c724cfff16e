// Zero-downtime changes (expand, then contract) and batched backfills: what migration files import,
// as `import { backfill } from "ai-micro-migrations/evolve"`, and what generate renders.
export type { EvolveChange } from "./change";
export { backfill, type BackfillOptions, type BackfillResult } from "./backfill";
export { expand, undoExpand, contract, undoContract, countDifferences } from "./operations";
export { inShortTransaction } from "./short-transaction";
export { renderEvolveMigrations, type EvolveFile } from "./render";
