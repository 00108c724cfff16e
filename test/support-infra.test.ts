// The test infrastructure itself: a PgBouncer in front of the test server, and a primary with a
// streaming hot standby. Neither skips: a missing pgbouncer fails here (bash scripts/provision.sh).
import { Client } from "pg";
import { serverUrl } from "./support/databases";
import { PgBouncer, startPgBouncer } from "./support/pgbouncer";
import { PrimaryWithStandby, startPrimaryWithStandby } from "./support/standby";

async function connect(url: string): Promise<Client> {
  const client = new Client({ connectionString: url });
  await client.connect();
  return client;
}

const backendPid = async (c: Client) => (await c.query(`SELECT pg_backend_pid() AS pid`)).rows[0].pid as number;

describe("PgBouncer in front of the test server (transaction pooling)", () => {
  let bouncer: PgBouncer | undefined;
  const clients: Client[] = [];

  afterAll(async () => {
    for (const c of clients) await c.end().catch(() => undefined);
    await bouncer?.stop();
  });

  test("queries pass through, and a client's statements land on whichever server connection is free", async () => {
    const started = Date.now();
    bouncer = await startPgBouncer(serverUrl(), { poolMode: "transaction" });
    console.log(`PgBouncer up on port ${bouncer.port} in ${Date.now() - started} ms`);

    const a = await connect(bouncer.url("postgres"));
    const b = await connect(bouncer.url("postgres"));
    clients.push(a, b);
    expect((await a.query(`SELECT 1 AS one`)).rows[0].one).toBe(1);

    // Observed: PgBouncer hands out the most recently released idle server connection (LIFO).
    // A's autocommit statement releases its server at once; B's open transaction then takes that
    // very server and holds it, so A's next autocommit statement runs on another backend.
    const a1 = await backendPid(a);
    await b.query("BEGIN");
    const bPid = await backendPid(b);
    const a2 = await backendPid(a);
    expect(bPid).toBe(a1); // B got the server A had just released
    expect(a2).not.toBe(a1); // same client session, different backend: transaction pooling
    expect(await backendPid(b)).toBe(bPid); // within its transaction B keeps its server
    await b.query("COMMIT");
    // With nobody holding a transaction, A's successive statements reuse the same idle server.
    const a3 = await backendPid(a);
    expect(await backendPid(a)).toBe(a3);
  }, 30_000);
});

describe("a primary with a streaming hot standby", () => {
  let pair: PrimaryWithStandby | undefined;
  afterAll(async () => {
    await pair?.stop();
  });

  test("the standby is in recovery and read-only, the primary is not", async () => {
    const started = Date.now();
    pair = await startPrimaryWithStandby();
    console.log(`primary + standby up in ${Date.now() - started} ms`);

    const primary = await connect(pair.primaryUrl);
    const standby = await connect(pair.standbyUrl);
    try {
      expect((await primary.query(`SELECT pg_is_in_recovery() AS r`)).rows[0].r).toBe(false);
      expect((await standby.query(`SELECT pg_is_in_recovery() AS r`)).rows[0].r).toBe(true);
      await expect(standby.query(`CREATE TABLE should_fail (id int)`)).rejects.toMatchObject({
        code: "25006", // read_only_sql_transaction
        message: expect.stringMatching(/read-only transaction/),
      });
    } finally {
      await primary.end();
      await standby.end();
    }
  }, 30_000);
});
