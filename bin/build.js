// Keeps dist/ in step with the TypeScript sources (src/, scripts/): compiles with tsc when any source
// but a migration is newer than the build stamp. Migrations are compiled too, when a build runs; one
// written since is compiled on the fly when it is loaded (src/runner/migration-files.ts). A lock file keeps concurrent runs from
// compiling over each other.
"use strict";
const fs = require("fs");
const path = require("path");
const { spawnSync } = require("child_process");

const ROOT = path.resolve(__dirname, "..");
const DIST = path.join(ROOT, "dist");
const STAMP = path.join(DIST, ".build-stamp");
const LOCK = path.join(ROOT, ".build.lock");
const SOURCES = ["src", "scripts", "ormconfig.ts", "tsconfig.json", "tsconfig.build.json"];

function newestSource(p) {
  const stat = fs.statSync(p, { throwIfNoEntry: false });
  if (!stat) return 0;
  if (!stat.isDirectory()) return /\.(ts|json)$/.test(p) ? stat.mtimeMs : 0;
  if (p === path.join(ROOT, "src", "migrations")) return 0;
  let newest = 0;
  for (const entry of fs.readdirSync(p)) newest = Math.max(newest, newestSource(path.join(p, entry)));
  return newest;
}

function isFresh() {
  const stamp = fs.statSync(STAMP, { throwIfNoEntry: false });
  return !!stamp && SOURCES.every((s) => newestSource(path.join(ROOT, s)) <= stamp.mtimeMs);
}

function sleep(ms) {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

function ensureBuilt() {
  if (isFresh()) return;
  let fd;
  for (let waited = 0; fd === undefined; waited += 100) {
    try {
      fd = fs.openSync(LOCK, "wx");
    } catch (error) {
      if (error.code !== "EEXIST") throw error;
      // Someone else is compiling: wait, then use their build (a lock older than 2 min is stale).
      const lock = fs.statSync(LOCK, { throwIfNoEntry: false });
      if (lock && Date.now() - lock.mtimeMs > 120000) fs.rmSync(LOCK, { force: true });
      sleep(100);
      if (waited > 120000) throw new Error("timed out waiting for another build (remove .build.lock)");
    }
  }
  let failed = false;
  try {
    if (isFresh()) return;
    const started = Date.now();
    // What each migration's source was when compilation began: a compiled migration is used only
    // while its source still has this checksum (src/runner/migration-files.ts), never on a guess from mtimes.
    const sources = migrationChecksums();
    const tsc = require.resolve("typescript/bin/tsc");
    const result = spawnSync(process.execPath, [tsc, "-p", path.join(ROOT, "tsconfig.build.json")], { stdio: ["ignore", 2, 2] });
    // tsc emits despite type errors; the CLI is usable as long as it was emitted (CI type-checks).
    if (result.status !== 0 && !fs.existsSync(path.join(DIST, "scripts", "cli.js"))) {
      process.stderr.write("error: compiling the migration tool failed (see above)\n");
      failed = true;
      return;
    }
    if (result.status !== 0) process.stderr.write("warning: the TypeScript sources have type errors (see above)\n");
    fs.mkdirSync(DIST, { recursive: true });
    fs.writeFileSync(path.join(DIST, "migrations.json"), JSON.stringify(sources, null, 2) + "\n");
    fs.writeFileSync(STAMP, new Date(started).toISOString() + "\n");
    // The stamp is dated from the start, so a source saved during the build counts as newer.
    fs.utimesSync(STAMP, new Date(started), new Date(started));
  } finally {
    fs.closeSync(fd);
    fs.rmSync(LOCK, { force: true });
    if (failed) process.exit(2);
  }
}

/** sha256 (line endings normalized, as src/runner/migration-files.ts checksums them) of each migration source. */
function migrationChecksums() {
  const crypto = require("crypto");
  const out = {};
  const walk = (dir) => {
    for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
      const full = path.join(dir, entry.name);
      if (entry.isDirectory()) walk(full);
      else if (/\.ts$/.test(entry.name) && !entry.name.endsWith(".d.ts")) {
        const text = fs.readFileSync(full, "utf8").replace(/\r\n?/g, "\n");
        out[path.relative(ROOT, full)] = crypto.createHash("sha256").update(text).digest("hex");
      }
    }
  };
  if (fs.existsSync(path.join(ROOT, "src", "migrations"))) walk(path.join(ROOT, "src", "migrations"));
  return out;
}

module.exports = { ensureBuilt };

if (require.main === module) ensureBuilt();
