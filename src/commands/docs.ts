// schema:docs: writes docs/schema.md (ER diagrams and column tables) from the entities. Reads no
// database. With `check`, writes nothing and says whether the file on disk is stale.
//
//   schemaDocs({})              // { file: "docs/schema.md", changed: true }  (written)
//   schemaDocs({ check: true }) // { file: "docs/schema.md", changed: false } (up to date)
import * as fs from "fs";
import * as path from "path";
import { PROJECT_ROOT } from "../paths";
import { renderSchemaDocs } from "../schema/docs";

export const SCHEMA_DOCS_FILE = path.join("docs", "schema.md");

export interface SchemaDocsOptions {
  /** Where to write, relative to the project root (default `docs/schema.md`). */
  out?: string;
  /** Write nothing; `changed` then says whether the file differs from what would be written. */
  check?: boolean;
}

export interface SchemaDocsReport {
  /** The file, relative to the working directory. */
  file: string;
  /** The file differed from the rendered docs (or did not exist): written, or with `check` stale. */
  changed: boolean;
}

export function schemaDocs(options: SchemaDocsOptions = {}): SchemaDocsReport {
  const file = path.resolve(PROJECT_ROOT, options.out ?? SCHEMA_DOCS_FILE);
  const text = renderSchemaDocs();
  const current = fs.existsSync(file) ? fs.readFileSync(file, "utf8") : null;
  const changed = current !== text;
  if (changed && !options.check) {
    fs.mkdirSync(path.dirname(file), { recursive: true });
    // Written beside and renamed over: a reader never sees half a file.
    const partial = `${file}.${process.pid}.tmp`;
    fs.writeFileSync(partial, text);
    fs.renameSync(partial, file);
  }
  return { file: path.relative(process.cwd(), file) || file, changed };
}
