// Where the project lives, the same whether this code runs from src/ (ts-node, jest) or dist/.
import * as fs from "fs";
import * as path from "path";

function findProjectRoot(from: string): string {
  for (let dir = from; ; dir = path.dirname(dir)) {
    if (fs.existsSync(path.join(dir, "package.json"))) return dir;
    if (path.dirname(dir) === dir) return path.resolve(from, "..");
  }
}

export const PROJECT_ROOT = findProjectRoot(__dirname);
/** The migrations are always read from their TypeScript sources: what is checksummed is what runs. */
export const MIGRATIONS_ROOT = path.join(PROJECT_ROOT, "src", "migrations");
export const EMBEDDED_ROOT = path.join(PROJECT_ROOT, ".pgdata");
