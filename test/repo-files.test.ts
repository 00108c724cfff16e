// The files around the tool: compose.yaml with its init SQL and .env.example, the GitHub Actions
// workflow, scripts/quickstart.sh. No database and no install: the files are parsed and validated,
// and the quickstart runs in a scratch copy of the repository with stub programs on its PATH.
import { spawnSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import * as dotenv from "dotenv";
import { parse } from "yaml";
import { validateWorkflow } from "@action-validator/core";
import { loadConfig } from "../src/config";
import { DATABASES } from "../src/databases";
import { runCli } from "./support/cli";

const ROOT = path.resolve(__dirname, "..");
const read = (file: string) => fs.readFileSync(path.join(ROOT, file), "utf8");
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Yaml = any;

/** Compose's `${VAR:-default}` / `${VAR}` interpolation, enough for compose.yaml. */
function interpolate(text: string, env: Record<string, string>): string {
  return text.replace(/\$\{(\w+)(?::-([^}]*))?\}/g, (_, name: string, fallback?: string) => env[name] || fallback || "");
}

describe("compose.yaml: the ai-micro server for local work", () => {
  const compose: Yaml = parse(read("compose.yaml"));
  const service: Yaml = compose.services?.postgres;

  it("runs pgvector/pgvector:pg15 with its superuser from the environment, defaults otherwise", () => {
    expect(Object.keys(compose.services)).toEqual(["postgres"]);
    expect(service.image).toBe("pgvector/pgvector:pg15");
    expect(service.environment.POSTGRES_USER).toMatch(/^\$\{POSTGRES_USER:-\w+\}$/);
    expect(service.environment.POSTGRES_PASSWORD).toMatch(/^\$\{POSTGRES_PASSWORD:-\S+\}$/);
  });

  it("publishes 5432 on 127.0.0.1 only", () => {
    expect(service.ports.map((p: string) => interpolate(p, {}))).toEqual(["127.0.0.1:5432:5432"]);
    expect(service.ports.map((p: string) => interpolate(p, { POSTGRES_PORT: "15432" }))).toEqual(["127.0.0.1:15432:5432"]);
    expect(service.network_mode).toBeUndefined();
  });

  it("keeps its data in a named volume and mounts the init scripts", () => {
    const data = service.volumes.find((v: string) => v.split(":")[1] === "/var/lib/postgresql/data");
    expect(data).toBeDefined();
    expect(Object.keys(compose.volumes)).toContain(data.split(":")[0]);
    const init = service.volumes.find((v: string) => v.split(":")[1] === "/docker-entrypoint-initdb.d");
    expect(init).toMatch(/^\.\/docker\/init:\/docker-entrypoint-initdb\.d(:ro)?$/);
  });

  it("is healthy when pg_isready says so", () => {
    const test: string[] = service.healthcheck.test;
    expect(test[0]).toBe("CMD-SHELL");
    expect(test[1]).toMatch(/^pg_isready /);
    // `$$` is compose's escape for a `$` the container's shell expands (the user it was started with).
    expect(test[1]).toContain("$${POSTGRES_USER}");
    for (const key of ["interval", "timeout", "start_period"]) expect(service.healthcheck[key]).toMatch(/^\d+s$/);
    expect(service.healthcheck.retries).toBeGreaterThan(0);
  });

  it("creates authdb, apidb and admindb at the first start, and nothing else", () => {
    const dir = path.join(ROOT, "docker", "init");
    const files = fs.readdirSync(dir);
    expect(files).toEqual(["01-databases.sql"]);
    const sql = fs.readFileSync(path.join(dir, files[0]), "utf8").replace(/--.*$/gm, "");
    const statements = sql.split(";").map((s) => s.trim()).filter(Boolean);
    expect(statements).toEqual(DATABASES.map((db) => `CREATE DATABASE ${db}`));
  });

  it("names only the variables .env.example sets", () => {
    const used = [...read("compose.yaml").matchAll(/(?<!\$)\$\{(\w+)/g)].map((m) => m[1]);
    expect(new Set(used)).toEqual(new Set(["POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_PORT"]));
    const example = read(".env.example");
    for (const name of used) expect(example).toMatch(new RegExp(`^(# )?${name}=`, "m"));
  });
});

describe(".env.example: `cp .env.example .env` points the tool at the compose server", () => {
  const text = read(".env.example");
  const active = dotenv.parse(text);
  // The commented examples, `# KEY=value`, each under a one-line comment.
  const lines = text.split("\n");
  const examples = lines.flatMap((line, i) => {
    const m = /^# ([A-Z][A-Z0-9_]*)=(\S*)$/.exec(line);
    return m ? [{ key: m[1], value: m[2], line: i }] : [];
  });

  it("sets DATABASE_URL to the compose server's postgres database, as its superuser", () => {
    const url = new URL(active.DATABASE_URL);
    expect(url.protocol).toBe("postgres:");
    expect(url.hostname).toBe("127.0.0.1");
    expect(url.port).toBe("5432");
    expect(url.pathname).toBe("/postgres");
    expect(decodeURIComponent(url.username)).toBe(active.POSTGRES_USER);
    expect(decodeURIComponent(url.password)).toBe(active.POSTGRES_PASSWORD);
    // The same as compose.yaml's defaults, so it works whichever came first, the volume or .env.
    const env: Yaml = parse(read("compose.yaml")).services.postgres.environment;
    expect(interpolate(env.POSTGRES_USER, {})).toBe(active.POSTGRES_USER);
    expect(interpolate(env.POSTGRES_PASSWORD, {})).toBe(active.POSTGRES_PASSWORD);
  });

  it("is a configuration the tool accepts: the three databases on that server", () => {
    const config = loadConfig({ ...active });
    expect(config.server).toBe("configured");
    for (const db of DATABASES) {
      expect(config.targets[db].source).toBe("DATABASE_URL");
      expect(config.targets[db].database).toBe(db);
      expect(config.targets[db].display).toBe(`postgres://${active.POSTGRES_USER}:***@127.0.0.1:5432/${db}`);
    }
  });

  it("comments out every other example, each under a one-line comment, each a variable the tool or compose reads", () => {
    expect(Object.keys(active).sort()).toEqual(["DATABASE_URL", "POSTGRES_PASSWORD", "POSTGRES_USER"]);
    const keys = examples.map((e) => e.key);
    for (const key of ["AUTHDB_DIRECT_URL", "APIDB_DIRECT_URL", "ADMINDB_DIRECT_URL", "DATABASE_DIRECT_URL", "MIGRATION_BACKUP_DIR", "MIGRATION_LOCK_TIMEOUT"]) {
      expect(keys).toContain(key);
    }
    const sources = [
      ...["src", "scripts"].flatMap((dir) => (fs.readdirSync(path.join(ROOT, dir), { recursive: true }) as string[]).map((f) => path.join(dir, f))),
    ]
      .filter((f) => f.endsWith(".ts"))
      .map(read)
      .concat(read("compose.yaml"))
      .join("\n");
    for (const { key, line } of examples) {
      expect([key, new RegExp(`\\b${key}\\b`).test(sources)]).toEqual([key, true]);
      // Above it: its comment, or the example before it (a group under one comment).
      let above = line - 1;
      while (above >= 0 && /^# [A-Z][A-Z0-9_]*=/.test(lines[above])) above--;
      expect([key, lines[above]]).toEqual([key, expect.stringMatching(/^# \S/)]);
    }
  });

  it("with every example uncommented, is still a configuration the tool accepts (the direct URLs win)", () => {
    const all = { ...active, ...Object.fromEntries(examples.map((e) => [e.key, e.value])) };
    const config = loadConfig(all);
    for (const db of DATABASES) {
      expect(config.targets[db].source).toBe(`${db.toUpperCase()}_DIRECT_URL`);
      expect(config.targets[db].database).toBe(db);
    }
  });

  it("is committed while .env and every .env.<name> (passwords) stay ignored, by git itself", () => {
    const ignored = (file: string) => spawnSync("git", ["check-ignore", "--no-index", "-q", file], { cwd: ROOT }).status === 0;
    expect([".env", ".env.staging", ".env.production", ".env.local"].filter((f) => !ignored(f))).toEqual([]);
    expect(ignored(".env.example")).toBe(false);
    expect(spawnSync("git", ["ls-files", "--error-unmatch", ".env.example"], { cwd: ROOT }).status).toBe(0);
  });
});

describe(".github/workflows/migrations.yml", () => {
  const file = ".github/workflows/migrations.yml";
  const source = read(file);
  const workflow: Yaml = parse(source);
  const [jobName] = Object.keys(workflow.jobs);
  const job: Yaml = workflow.jobs[jobName];
  const steps: Yaml[] = job.steps;
  const runs: string[] = steps.map((s) => (typeof s.run === "string" ? s.run.trim() : ""));
  const indexOfRun = (command: string) => runs.findIndex((r) => r === command);

  /** action-validator (GitHub's workflow schema, compiled to wasm) on `text`; its warnings collected. */
  function validate(text: string): { errors: unknown[]; warnings: string[] } {
    const warnings: string[] = [];
    const spy = jest.spyOn(console, "warn").mockImplementation((...args: unknown[]) => void warnings.push(args.join(" ")));
    try {
      return { errors: validateWorkflow(text).errors, warnings };
    } finally {
      spy.mockRestore();
    }
  }

  it("is a valid GitHub Actions workflow (and the validator does reject a broken one)", () => {
    const { errors, warnings } = validate(source);
    expect(errors).toEqual([]);
    expect(warnings.filter((w) => !/Glob validation is not yet supported/.test(w))).toEqual([]);
    const broken = source.replace(/^    runs-on: .*$/m, "    runs_on: ubuntu-latest");
    expect(broken).not.toBe(source);
    expect(validate(broken).errors).not.toEqual([]);
  });

  it("runs on pull requests that touch the entities, the migrations, the dependencies or itself, and on main", () => {
    expect(new Set(workflow.on.pull_request.paths)).toEqual(
      new Set(["src/entities/**", "src/migrations/**", "package*.json", ".github/workflows/migrations.yml"]),
    );
    expect(workflow.on.push.branches).toEqual(["main"]);
    // Each filter matches something that exists (a renamed folder would silently disable it).
    expect(fs.readdirSync(path.join(ROOT, "src", "entities")).length).toBeGreaterThan(0);
    expect(fs.readdirSync(path.join(ROOT, "src", "migrations")).length).toBeGreaterThan(0);
    expect(fs.readdirSync(ROOT).filter((f) => /^package.*\.json$/.test(f)).sort()).toEqual(["package-lock.json", "package.json"]);
  });

  it("runs on ubuntu-latest with a healthy pgvector/pgvector:pg15 service on 5432", () => {
    expect(job["runs-on"]).toBe("ubuntu-latest");
    const services = Object.entries(job.services as Record<string, Yaml>);
    expect(services).toHaveLength(1);
    const [, service] = services[0];
    expect(service.image).toBe("pgvector/pgvector:pg15");
    expect(service.env.POSTGRES_PASSWORD).toBeTruthy();
    expect(service.ports.map(String)).toContain("5432:5432");
    expect(service.options).toMatch(/--health-cmd "pg_isready[^"]*"/);
    expect(service.options).toMatch(/--health-retries \d+/);
  });

  it("uses Node 20 with the npm cache, then npm ci", () => {
    const setup = steps.find((s) => typeof s.uses === "string" && s.uses.startsWith("actions/setup-node@"));
    expect(setup?.with).toEqual({ "node-version": 20, cache: "npm" });
    expect(steps[0].uses).toMatch(/^actions\/checkout@v\d+$/);
    expect(runs.findIndex((r) => r.startsWith("npm ci"))).toBeGreaterThan(steps.indexOf(setup));
  });

  it("provisions, tests against the service, then deploys, checks, lints and compares entities on its databases, in that order", () => {
    const order = [
      "bash scripts/provision.sh",
      "npm test",
      "npm run migration:run",
      "npm run migration:check",
      "npm run migration:lint -- --all",
      "npm run migration:generate -- --check",
    ].map(indexOfRun);
    expect(order.every((i) => i >= 0)).toBe(true);
    expect([...order].sort((a, b) => a - b)).toEqual(order);
    expect(runs.findIndex((r) => r.startsWith("npm ci"))).toBeLessThan(order[1]);
  });

  it("points the tests and the deploy at the service, as its superuser", () => {
    const [serviceName, service] = Object.entries(job.services as Record<string, Yaml>)[0];
    // From a job container the service is reached by its name; from the runner itself, on localhost.
    const host = job.container ? serviceName : "localhost";
    const expected = `postgres://postgres:${service.env.POSTGRES_PASSWORD}@${host}:5432/postgres`;
    const envOf = (i: number) => ({ ...workflow.env, ...job.env, ...steps[i].env });
    expect(envOf(indexOfRun("npm test")).TEST_DATABASE_URL).toBe(expected);
    for (const command of ["npm run migration:run", "npm run migration:check", "npm run migration:lint -- --all", "npm run migration:generate -- --check"]) {
      const env = envOf(indexOfRun(command));
      expect([command, env.DATABASE_URL, env.NODE_ENV]).toEqual([command, expected, "production"]);
    }
    // NODE_ENV=production would make `npm ci` leave out the devDependencies the suite needs.
    expect({ ...workflow.env, ...job.env }.NODE_ENV).toBeUndefined();
  });

  it("runs only npm scripts that exist, with flags their commands list in --help", async () => {
    const scripts = JSON.parse(read("package.json")).scripts as Record<string, string>;
    for (const run of runs.filter((r) => r.startsWith("npm run "))) {
      const [, , name, ...rest] = run.split(" ");
      expect([run, scripts[name]]).toEqual([run, `node bin/migrate.js ${name}`]);
      const help = await runCli([name, "--help"], {});
      expect([run, help.code]).toEqual([run, 0]);
      for (const flag of rest.filter((a) => a.startsWith("--") && a !== "--")) {
        expect([run, help.stdout]).toEqual([run, expect.stringMatching(new RegExp(`^\\s+${flag}\\b`, "m"))]);
      }
    }
  });
});

describe("scripts/quickstart.sh", () => {
  const script = read("scripts/quickstart.sh");

  it("is bash with set -euo pipefail, and parses", () => {
    expect(script.startsWith("#!/usr/bin/env bash\n")).toBe(true);
    expect(script).toMatch(/^set -euo pipefail$/m);
    const r = spawnSync("bash", ["-n", path.join(ROOT, "scripts", "quickstart.sh")], { encoding: "utf8" });
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
  });

  // A scratch copy of the repository: the real quickstart.sh (only where it looks for the installed
  // PostgreSQL and PgBouncer changed, to a scratch folder), a stub provision.sh, and a PATH of stub
  // programs (id, node, npm, and apt-get or sudo when a case has them) that log what they are asked.
  const real = (program: string) => spawnSync("bash", ["-c", `command -v ${program}`], { encoding: "utf8" }).stdout.trim();
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "aimig-quickstart-"));
  afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));
  let cases = 0;

  interface Case {
    uid?: number;
    aptGet?: boolean;
    sudo?: boolean;
    installed?: boolean;
    node?: string | null;
    provisionExit?: number;
    env?: Record<string, string>;
    dotEnv?: string;
  }

  function sandbox(c: Case) {
    const dir = path.join(tmp, String(++cases));
    const repo = path.join(dir, "repo");
    const bin = path.join(dir, "bin");
    const sys = path.join(dir, "sys");
    fs.mkdirSync(path.join(repo, "scripts"), { recursive: true });
    fs.mkdirSync(bin);
    let copy = script;
    for (const [name, value] of [["pg_lib", `${sys}/lib`], ["pg_share", `${sys}/share`], ["pgbouncer_bin", `${sys}/sbin/pgbouncer`]]) {
      const line = new RegExp(`^${name}=\\S+`, "m");
      expect(copy.match(new RegExp(line.source, "gm"))).toHaveLength(1);
      copy = copy.replace(line, `${name}=${value}`);
    }
    fs.writeFileSync(path.join(repo, "scripts", "quickstart.sh"), copy);
    const stub = (file: string, body: string) => fs.writeFileSync(file, `#!${real("bash")}\n${body}\n`, { mode: 0o755 });
    stub(path.join(repo, "scripts", "provision.sh"), `echo "provision as uid $(id -u)" >> "$QS_LOG"; exit ${c.provisionExit ?? 0}`);
    fs.writeFileSync(path.join(repo, "package.json"), "{}\n");
    fs.writeFileSync(path.join(repo, "package-lock.json"), "{}\n");
    if (c.dotEnv !== undefined) fs.writeFileSync(path.join(repo, ".env"), c.dotEnv);
    if (c.installed) {
      for (const [file, mode] of [["lib/15/bin/postgres", 0o755], ["share/15/extension/vector.control", 0o644], ["sbin/pgbouncer", 0o755]] as const) {
        fs.mkdirSync(path.dirname(path.join(sys, file)), { recursive: true });
        fs.writeFileSync(path.join(sys, file), "", { mode });
      }
    }
    for (const program of ["bash", "dirname", "env", "grep"]) fs.symlinkSync(real(program), path.join(bin, program));
    stub(path.join(bin, "id"), `echo "\${FAKE_UID:-${c.uid ?? 1000}}"`);
    if (c.node !== null) stub(path.join(bin, "node"), `echo "v${c.node ?? "20.19.0"}"`);
    stub(path.join(bin, "npm"), `echo "npm $*" >> "$QS_LOG"; if [ "$1" = ci ]; then ${real("mkdir")} -p node_modules && : > node_modules/.package-lock.json; fi`);
    if (c.aptGet) stub(path.join(bin, "apt-get"), `echo "apt-get $*" >> "$QS_LOG"`);
    if (c.sudo) stub(path.join(bin, "sudo"), `echo "sudo $*" >> "$QS_LOG"; FAKE_UID=0 exec "$@"`);
    const log = path.join(dir, "log");
    fs.writeFileSync(log, "");
    const run = () => {
      fs.writeFileSync(log, "");
      // Started from another directory: the script finds the repository by its own path.
      const r = spawnSync(real("bash"), [path.join(repo, "scripts", "quickstart.sh")], {
        cwd: dir,
        env: { PATH: bin, HOME: dir, QS_LOG: log, ...c.env },
        encoding: "utf8",
      });
      const lines = fs.readFileSync(log, "utf8").split("\n").filter(Boolean);
      return { code: r.status, stdout: r.stdout, stderr: r.stderr, log: lines };
    };
    return { repo, run };
  }

  const NPM_CI = "npm ci --no-audit --no-fund --loglevel=error";
  const MIGRATE = "npm run migration:run";

  it("without apt-get and PostgreSQL: one line saying what to install, exit 2, nothing run", () => {
    const r = sandbox({}).run();
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^quickstart: no apt-get here: install PostgreSQL 15 \(or 17\) with pgvector, and PgBouncer, then run this again\n$/);
    expect(r.stdout).toBe("");
    expect(r.log).toEqual([]);
  });

  it("not root and no sudo: one line, exit 2, nothing run", () => {
    const r = sandbox({ aptGet: true }).run();
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^quickstart: not root and no sudo: run this as root, or install PostgreSQL .*pgvector.*PgBouncer.*\n$/);
    expect(r.log).toEqual([]);
  });

  it("not root, with sudo: provisions through sudo, installs the packages, migrates the embedded database", () => {
    const r = sandbox({ aptGet: true, sudo: true }).run();
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.log).toEqual(["sudo bash scripts/provision.sh", "provision as uid 0", NPM_CI, MIGRATE]);
  });

  it("as root: provisions directly", () => {
    const r = sandbox({ aptGet: true, uid: 0 }).run();
    expect(r.code).toBe(0);
    expect(r.log).toEqual(["provision as uid 0", NPM_CI, MIGRATE]);
  });

  it("when provisioning fails, stops there with its exit code", () => {
    const r = sandbox({ aptGet: true, uid: 0, provisionExit: 2 }).run();
    expect(r.code).toBe(2);
    expect(r.log).toEqual(["provision as uid 0"]);
  });

  it("is idempotent: installed and up to date, it only migrates (and needs neither apt-get nor root)", () => {
    const box = sandbox({ installed: true });
    const first = box.run();
    expect(first.code).toBe(0);
    expect(first.log).toEqual([NPM_CI, MIGRATE]);
    const again = box.run();
    expect(again.code).toBe(0);
    expect(again.log).toEqual([MIGRATE]);
    expect(again.stdout).toContain("quickstart: PostgreSQL with pgvector and PgBouncer are installed");
    expect(again.stdout).toContain("quickstart: node_modules is up to date");
  });

  it("runs npm ci again when package-lock.json is newer than node_modules", () => {
    const box = sandbox({ installed: true });
    expect(box.run().log).toEqual([NPM_CI, MIGRATE]);
    const later = new Date(Date.now() + 60_000);
    fs.utimesSync(path.join(box.repo, "package-lock.json"), later, later);
    expect(box.run().log).toEqual([NPM_CI, MIGRATE]);
  });

  it("needs Node.js 20.19 or newer: one line, exit 2, nothing run", () => {
    for (const node of ["18.19.0", "20.18.1", null]) {
      const r = sandbox({ installed: true, node }).run();
      expect(r.code).toBe(2);
      expect(r.stderr).toBe(`quickstart: install Node.js 20.19 or newer with npm (found ${node ?? "none"}; Debian 13: apt-get install nodejs npm), then run this again\n`);
      expect(r.log).toEqual([]);
    }
    expect(sandbox({ installed: true, node: "22.1.0" }).run().code).toBe(0);
  });

  it("leaves a configured server alone: DATABASE_URL in the environment or in .env", () => {
    const fromEnv = sandbox({ installed: true, env: { DATABASE_URL: "postgres://u:p@db.example:5432/postgres" } }).run();
    expect(fromEnv.code).toBe(0);
    expect(fromEnv.log).toEqual([NPM_CI]);
    expect(fromEnv.stdout).toContain("quickstart: a server is configured");
    const fromDotEnv = sandbox({ installed: true, dotEnv: read(".env.example") }).run();
    expect(fromDotEnv.log).toEqual([NPM_CI]);
    // Only commented or empty URLs: nothing configured, the embedded database it is.
    const commented = sandbox({ installed: true, dotEnv: "# DATABASE_URL=postgres://u:p@h/postgres\nAUTHDB_URL=\nMIGRATION_BACKUP_KEEP=3\n" }).run();
    expect(commented.log).toEqual([NPM_CI, MIGRATE]);
  });
});
