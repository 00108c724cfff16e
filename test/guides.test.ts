// README.ja.md kept in step with README.md: the same commands, flags (spelt as the CLI spells them),
// environment variables, JSON report fields and measured figures appear in both guides, so the
// Japanese guide cannot drift again. Prose may differ; these may not.
import * as fs from "fs";
import * as path from "path";
import { FLAGS } from "../scripts/command-line";
import { backticked, README, README_JA, ROOT, tableRows } from "./support/readme";

const GUIDES = { "README.md": README, "README.ja.md": README_JA };
const set = (items: Iterable<string>) => [...new Set(items)].sort();
const both = (extract: (text: string) => string[]) => ({ en: set(extract(README)), ja: set(extract(README_JA)) });

const scripts: Record<string, string> = JSON.parse(fs.readFileSync(path.join(ROOT, "package.json"), "utf8")).scripts;
const commandsIn = (text: string) => [...text.matchAll(/(?<![\w/.-])((?:migration|db|schema|bench):[a-z][a-z-]*)/g)].map((m) => m[1]);
const flagsIn = (text: string) => [...text.matchAll(/(?<![\w-])--[a-z][a-z-]+/g)].map((m) => m[0]);
const flagsWithValueIn = (text: string) => [...text.matchAll(/(?<![\w-])(--[a-z][a-z-]+) (<[^>]+>)/g)].map((m) => `${m[1]} ${m[2]}`);
const variablesIn = (text: string) => [...text.matchAll(/\b[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+\b/g)].map((m) => m[0]);

/** The measured part of a guide: from its tests-and-benchmarks heading to the end. */
const measured = (text: string, heading: string) => {
  const at = text.indexOf(heading);
  if (at < 0) throw new Error(`no "${heading}" section`);
  return text.slice(at).replace(/〜/g, "-").replace(/(\d),(\d{3})/g, "$1$2");
};
const MEASURED = { en: measured(README, "\n## Tests and benchmarks"), ja: measured(README_JA, "\n### 実測値とベンチマーク") };
/** Figures with a unit: `2067 ms`, `3.43 s`, `8-42 ms`. */
const timesIn = (text: string) => [...text.matchAll(/(?<![\w.])(\d+(?:\.\d+)?(?:-\d+(?:\.\d+)?)?) ?(ms|s|MiB)(?![\w])/g)].map((m) => `${m[1]} ${m[2]}`);
/** Decimal figures without a unit: ratios (0.013, 2.13) and versions (PgBouncer 1.18). */
const ratiosIn = (text: string) => [...text.matchAll(/(?<![\w.])(\d+\.\d+)(?![\w.]| ?(?:ms|s|MiB)\b)/g)].map((m) => m[1]);

describe("README.ja.md says what README.md says", () => {
  it("the same npm scripts, each one package.json has", () => {
    const { en, ja } = both(commandsIn);
    expect(ja).toEqual(en);
    expect(en.filter((c) => !(c in scripts))).toEqual([]);
  });

  it("the same flags, each spelt with the value the CLI's --help gives it", () => {
    expect(both(flagsIn).ja).toEqual(both(flagsIn).en);
    const { en, ja } = both(flagsWithValueIn);
    expect(ja).toEqual(en);
    const syntax = new Map(Object.values(FLAGS).map((f) => [f.syntax.split(" ")[0], f.syntax]));
    // `--from-backup <run id>` in one place and `<backup>` in another is how the guides drifted.
    expect(en.filter((f) => syntax.has(f.split(" ")[0]) && syntax.get(f.split(" ")[0]) !== f)).toEqual([]);
  });

  it("the same environment variables", () => {
    const { en, ja } = both(variablesIn);
    expect(ja).toEqual(en);
  });

  it("the same fields in each JSON report row", () => {
    const rows = (text: string, ...header: string[]) => new Map(tableRows(text, ...header).map(([command, fields]) => [backticked(command)[0], set(backticked(fields))]));
    const en = rows(README, "command", "fields");
    const ja = rows(README_JA, "コマンド", "フィールド");
    expect([...ja.keys()].sort()).toEqual([...en.keys()].sort());
    for (const [command, fields] of en) expect({ command, fields: ja.get(command) }).toEqual({ command, fields });
  });

  it("the same measured figures: every figure of the Japanese summary is in README.md, and the ratios are the same", () => {
    expect(set(timesIn(MEASURED.ja)).filter((f) => !timesIn(MEASURED.en).includes(f))).toEqual([]);
    expect(set(ratiosIn(MEASURED.ja))).toEqual(set(ratiosIn(MEASURED.en)));
    expect(set(ratiosIn(MEASURED.en)).length).toBeGreaterThan(5); // the extraction finds the benchmark ratios at all
  });

  it("both describe .ci/run in the order it runs: the quick start, then npm test", () => {
    const ci = fs.readFileSync(path.join(ROOT, ".ci", "run"), "utf8");
    expect(ci.indexOf("bash scripts/quickstart.sh")).toBeLessThan(ci.indexOf("npm test"));
    for (const [name, text] of Object.entries(GUIDES)) {
      const line = [...text.matchAll(/`\.ci\/run`/g)].map((m) => text.slice(m.index, m.index + 250)).find((w) => w.includes("npm test"))!;
      const quickstart = line.indexOf("scripts/quickstart.sh");
      expect({ name, order: quickstart >= 0 && quickstart < line.lastIndexOf("npm test") }).toEqual({ name, order: true });
    }
  });
});
