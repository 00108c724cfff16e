// The changes expand/contract knows, as `generate` describes them (types as format_type() prints them).
export type EvolveChange =
  | { kind: "rename-column"; table: string; from: string; to: string; type: string; notNull: boolean; default?: string }
  | {
      kind: "change-type"; table: string; column: string; fromType: string; toType: string; notNull: boolean; default?: string;
      /** SQL expressions over the column's name converting a value, e.g. `left("bio", 40)`; default: a cast. */
      toNew?: string; toOld?: string;
      /** The old column's own NOT NULL and default, which a revert of the contract puts back (default: the new ones). */
      fromNotNull?: boolean; fromDefault?: string | null;
    }
  | {
      kind: "drop-column"; table: string; column: string; type: string; notNull: boolean; default?: string;
      /** The column's indexes as pg_get_indexdef prints them: its down builds them again (CONCURRENTLY). */
      indexes?: string[];
    };
