// Configuration parsing and URL redaction (no database needed).
import { describeServer, evolveSettings, loadConfig, redactUrl, scrubSecrets } from "../src/config";
import { UsageError } from "../src/errors";

describe("loadConfig", () => {
  it("derives the three databases from DATABASE_URL, with name overrides", () => {
    const config = loadConfig({ DATABASE_URL: "postgres://mig:s3cret@db.internal:6543/postgres", APIDB_NAME: "api_prod" });
    expect(config.server).toBe("configured");
    expect(config.targets.authdb.url).toBe("postgres://mig:s3cret@db.internal:6543/authdb");
    expect(config.targets.apidb.database).toBe("api_prod");
    expect(config.targets.admindb.source).toBe("DATABASE_URL");
    expect(config.targets.admindb.display).toBe("postgres://mig:***@db.internal:6543/admindb");
  });

  it("lets a per-database URL win over DATABASE_URL, each on its own server", () => {
    const config = loadConfig({
      DATABASE_URL: "postgres://a:pw@one/x",
      ADMINDB_URL: "postgresql://b:pw2@two:5433/admin_main",
    });
    expect(config.targets.admindb.database).toBe("admin_main");
    expect(config.targets.admindb.source).toBe("ADMINDB_URL");
    expect(new URL(config.targets.admindb.url).host).toBe("two:5433");
    expect(config.targets.authdb.database).toBe("authdb");
  });

  it("uses the default name when a per-database URL has no path", () => {
    const config = loadConfig({ AUTHDB_URL: "postgres://u:p@h", APIDB_URL: "postgres://u:p@h", ADMINDB_URL: "postgres://u:p@h" });
    expect(config.targets.apidb.database).toBe("apidb");
  });

  it("names the database and variable when a URL is missing", () => {
    expect(() => loadConfig({ AUTHDB_URL: "postgres://u:p@h/a" })).toThrow("no URL configured: set APIDB_URL or DATABASE_URL");
    try {
      loadConfig({ AUTHDB_URL: "postgres://u:p@h/a" });
    } catch (e) {
      expect((e as UsageError).line).toBe("apidb: no URL configured: set APIDB_URL or DATABASE_URL");
      expect((e as UsageError).exitCode).toBe(2);
    }
  });

  it.each([
    ["not a url at all", "is not a valid URL"],
    ["mysql://u:p@h/db", "must start with postgres://"],
    ["postgres://u:p@h:99x/db", "is not a valid URL"],
  ])("rejects %s without echoing it", (url, message) => {
    let error: unknown;
    try {
      loadConfig({ AUTHDB_URL: url, DATABASE_URL: "postgres://u:p@h/x" });
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(UsageError);
    expect((error as UsageError).line).toContain(message);
    expect((error as UsageError).line).toMatch(/^authdb: AUTHDB_URL /);
    expect((error as UsageError).line).not.toContain("u:p");
  });

  it("uses the embedded server when nothing is configured outside production", () => {
    const config = loadConfig({}, { embeddedUrl: () => "postgres://postgres:x@127.0.0.1:5999/postgres" });
    expect(config.server).toBe("embedded");
    expect(config.targets.apidb.url).toBe("postgres://postgres:x@127.0.0.1:5999/apidb");
    expect(describeServer(config)).toBe("server: embedded local PostgreSQL (127.0.0.1:5999, .pgdata/)");
  });

  it("refuses to fall back to the embedded server in production", () => {
    expect(() => loadConfig({ NODE_ENV: "production" }, { embeddedUrl: () => "postgres://p:x@127.0.0.1:1/postgres" })).toThrow(/no database configured/);
  });

  it("validates numeric settings", () => {
    expect(() => loadConfig({ DATABASE_URL: "postgres://u:p@h/x", MIGRATION_CONNECT_TIMEOUT_MS: "soon" })).toThrow(/MIGRATION_CONNECT_TIMEOUT_MS/);
  });

  it("shows servers without passwords", () => {
    const line = describeServer(loadConfig({ DATABASE_URL: "postgres://mig:hunter2@db:5432/x" }));
    expect(line).toBe("server: authdb=mig@db:5432/authdb apidb=mig@db:5432/apidb admindb=mig@db:5432/admindb");
  });
});

describe("redaction", () => {
  it("hides the password of a URL", () => {
    expect(redactUrl("postgres://mig:p%40ss@h:5432/db")).toBe("postgres://mig:***@h:5432/db");
    expect(redactUrl("postgres://mig@h/db")).toBe("postgres://mig@h/db");
  });

  it("hides the password even in text that is not a valid URL", () => {
    expect(redactUrl("postgres://mig:secret@h:99x/db")).toBe("postgres://mig:***@h:99x/db");
  });

  it("removes secrets from messages", () => {
    expect(scrubSecrets("failed for hunter2 at hunter2", ["hunter2"])).toBe("failed for *** at ***");
  });
});

describe("two names for one database", () => {
  it("is refused", () => {
    expect(() => loadConfig({ DATABASE_URL: "postgres://u:p@h/x", AUTHDB_NAME: "same", APIDB_NAME: "same" })).toThrow(/is configured as the same database as authdb \(h:5432\/same\)/);
  });
});

describe("evolveSettings", () => {
  it("defaults: batches of 1000, replica lag 5s, contract idle 5min; each variable overrides its own", () => {
    expect(evolveSettings({})).toEqual({ batchSize: 1000, maxReplicaLag: "5s", contractIdle: "5min" });
    expect(evolveSettings({ MIGRATION_BACKFILL_BATCH: "250", MIGRATION_BACKFILL_MAX_REPLICA_LAG: "500ms", MIGRATION_CONTRACT_IDLE: "1h" })).toEqual({ batchSize: 250, maxReplicaLag: "500ms", contractIdle: "1h" });
  });

  it("a bad value is a usage error naming the variable", () => {
    expect(() => evolveSettings({ MIGRATION_CONTRACT_IDLE: "soon" })).toThrow('MIGRATION_CONTRACT_IDLE must be a duration like 5s, 500ms, 15min or 0 (got "soon")');
    expect(() => evolveSettings({ MIGRATION_BACKFILL_BATCH: "0" })).toThrow("MIGRATION_BACKFILL_BATCH must be a positive integer");
    expect(() => loadConfig({ DATABASE_URL: "postgres://u:p@h/x", MIGRATION_BACKFILL_MAX_REPLICA_LAG: "far" })).toThrow(UsageError);
  });
});
