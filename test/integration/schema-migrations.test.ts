/**
 * Durable Object schemas upgrade in place on wake: an object written by an older version keeps
 * its data and gains what the new version needs, and upgrading twice changes nothing.
 */
import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { LEDGER_SCHEMA_VERSION, ensureLedgerSchema } from "../../durable-objects/ledger/schema";
import { SCHEMA_VERSION, migrateSchema } from "../../durable-objects/run/schema";

const tables = (storage: DurableObjectStorage) =>
  storage.sql.exec<{ name: string }>("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").toArray().map((r) => r.name);
const columns = (storage: DurableObjectStorage, table: string) => storage.sql.exec<{ name: string }>(`PRAGMA table_info(${table})`).toArray().map((c) => c.name);
const versionOf = (storage: DurableObjectStorage) => Number(storage.sql.exec<{ version: number }>("SELECT version FROM schema_meta").toArray()[0]?.version);

describe("the ledger's schema", () => {
  it("upgrades a v1 ledger to the current version, keeping its spend and budget, and a second upgrade changes nothing", async () => {
    const stub = env.CUSTOMER_LEDGER.get(env.CUSTOMER_LEDGER.idFromName(`schema-v1-${Math.random()}`));
    await runInDurableObject(stub, async (_instance, state) => {
      const storage = state.storage;
      storage.sql.exec(`
        CREATE TABLE budget (id INTEGER PRIMARY KEY CHECK (id = 1), limit_nano_usd TEXT, soft_thresholds TEXT NOT NULL);
        CREATE TABLE spend (month TEXT PRIMARY KEY, nano_usd TEXT NOT NULL);
        CREATE TABLE alerted (month TEXT NOT NULL, threshold REAL NOT NULL, PRIMARY KEY (month, threshold));
        CREATE TABLE reservations (id TEXT PRIMARY KEY, nano_usd TEXT NOT NULL);
        CREATE TABLE schema_meta (version INTEGER NOT NULL);
        INSERT INTO schema_meta (version) VALUES (1);
        INSERT INTO budget (id, limit_nano_usd, soft_thresholds) VALUES (1, '5000000000', '[0.5]');
        INSERT INTO spend (month, nano_usd) VALUES ('2026-11', '123456789');`);
      ensureLedgerSchema(storage);
      expect(versionOf(storage)).toBe(LEDGER_SCHEMA_VERSION);
      expect(tables(storage)).toEqual(expect.arrayContaining(["runs", "holds", "active_runs", "outbox", "spend", "budget"]));
      expect(tables(storage)).not.toContain("reservations");
      expect(columns(storage, "active_runs")).toContain("limited");
      expect(storage.sql.exec("SELECT nano_usd FROM spend WHERE month = '2026-11'").toArray()).toEqual([{ nano_usd: "123456789" }]);
      const before = JSON.stringify(tables(storage).map((t) => [t, columns(storage, t)]));
      ensureLedgerSchema(storage);
      expect(JSON.stringify(tables(storage).map((t) => [t, columns(storage, t)]))).toBe(before);
    });
  });

  it("adds `limited` to a v2 ledger's runs in flight, keeping them", async () => {
    const stub = env.CUSTOMER_LEDGER.get(env.CUSTOMER_LEDGER.idFromName(`schema-v2-${Math.random()}`));
    await runInDurableObject(stub, async (_instance, state) => {
      const storage = state.storage;
      storage.sql.exec(`
        CREATE TABLE active_runs (run_id TEXT PRIMARY KEY, admitted_at INTEGER NOT NULL);
        CREATE TABLE schema_meta (version INTEGER NOT NULL);
        INSERT INTO schema_meta (version) VALUES (2);
        INSERT INTO active_runs (run_id, admitted_at) VALUES ('run_a', 1);`);
      ensureLedgerSchema(storage);
      expect(versionOf(storage)).toBe(LEDGER_SCHEMA_VERSION);
      expect(storage.sql.exec("SELECT run_id, limited FROM active_runs").toArray()).toEqual([{ run_id: "run_a", limited: 0 }]);
    });
  });
});

describe("the ledger's schema, v3 to v4 (cost sub-ledgers)", () => {
  it("adds the sub-ledger tables empty to a v3 ledger, keeping its spend, runs and outbox: it stays a primary", async () => {
    const stub = env.CUSTOMER_LEDGER.get(env.CUSTOMER_LEDGER.idFromName(`schema-v3-${Math.random()}`));
    await runInDurableObject(stub, async (_instance, state) => {
      const storage = state.storage;
      storage.sql.exec(`
        CREATE TABLE budget (id INTEGER PRIMARY KEY CHECK (id = 1), limit_nano_usd TEXT, soft_thresholds TEXT NOT NULL);
        CREATE TABLE spend (month TEXT PRIMARY KEY, nano_usd TEXT NOT NULL);
        CREATE TABLE alerted (month TEXT NOT NULL, threshold REAL NOT NULL, PRIMARY KEY (month, threshold));
        CREATE TABLE runs (run_id TEXT PRIMARY KEY, seq INTEGER NOT NULL, months TEXT NOT NULL, updated_at INTEGER NOT NULL);
        CREATE TABLE holds (id TEXT PRIMARY KEY, run_id TEXT NOT NULL, nano_usd TEXT NOT NULL, expires_at INTEGER NOT NULL);
        CREATE TABLE active_runs (run_id TEXT PRIMARY KEY, admitted_at INTEGER NOT NULL, limited INTEGER NOT NULL DEFAULT 0);
        CREATE TABLE outbox (key TEXT PRIMARY KEY, version INTEGER NOT NULL, body TEXT NOT NULL);
        CREATE TABLE schema_meta (version INTEGER NOT NULL);
        INSERT INTO schema_meta (version) VALUES (3);
        INSERT INTO spend (month, nano_usd) VALUES ('2026-11', '987654321');
        INSERT INTO runs (run_id, seq, months, updated_at) VALUES ('run_a', 3, '{"2026-11":"987654321"}', 1);
        INSERT INTO outbox (key, version, body) VALUES ('rollup:run_a:0', 3, '{}');`);
      ensureLedgerSchema(storage);
      expect(versionOf(storage)).toBe(LEDGER_SCHEMA_VERSION);
      expect(tables(storage)).toEqual(expect.arrayContaining(["sub_ledger", "primary_outbox", "primary_releases", "sub_totals"]));
      for (const table of ["sub_ledger", "primary_outbox", "primary_releases", "sub_totals"]) expect(storage.sql.exec(`SELECT COUNT(*) AS n FROM ${table}`).toArray()).toEqual([{ n: 0 }]);
      expect(storage.sql.exec("SELECT nano_usd FROM spend").toArray()).toEqual([{ nano_usd: "987654321" }]);
      expect(storage.sql.exec("SELECT run_id, seq FROM runs").toArray()).toEqual([{ run_id: "run_a", seq: 3 }]);
      expect(storage.sql.exec("SELECT key FROM outbox").toArray()).toEqual([{ key: "rollup:run_a:0" }]);
      const before = JSON.stringify(tables(storage).map((t) => [t, columns(storage, t)]));
      ensureLedgerSchema(storage);
      expect(JSON.stringify(tables(storage).map((t) => [t, columns(storage, t)]))).toBe(before);
    });
  });
});

describe("the run object's schema", () => {
  it("upgrades a v2 run (steps without meter, resends, platform_failures) and keeps its steps", async () => {
    const stub = env.RUN_COORDINATOR.get(env.RUN_COORDINATOR.idFromName(`schema-run-v2-${Math.random()}`));
    await runInDurableObject(stub, async (_instance, state) => {
      const storage = state.storage;
      storage.sql.exec(`
        CREATE TABLE steps (idx INTEGER PRIMARY KEY, status TEXT NOT NULL, attempts INTEGER NOT NULL,
          attempt_base INTEGER NOT NULL, dispatch INTEGER NOT NULL, lease_id TEXT, deadline INTEGER, not_before INTEGER,
          wake_at INTEGER, output TEXT, error TEXT, started_at INTEGER, finished_at INTEGER, history TEXT NOT NULL);
        CREATE TABLE schema_meta (version INTEGER NOT NULL);
        INSERT INTO schema_meta (version) VALUES (2);
        INSERT INTO steps (idx, status, attempts, attempt_base, dispatch, history) VALUES (0, 'succeeded', 1, 0, 1, '[]');`);
      migrateSchema(storage);
      expect(versionOf(storage)).toBe(SCHEMA_VERSION);
      expect(columns(storage, "steps")).toEqual(expect.arrayContaining(["meter", "resends", "platform_failures"]));
      expect(storage.sql.exec("SELECT idx, status, resends, platform_failures FROM steps").toArray()).toEqual([{ idx: 0, status: "succeeded", resends: 0, platform_failures: 0 }]);
      expect(tables(storage)).toEqual(expect.arrayContaining(["run", "events", "outbox", "costs"]));
    });
  });
});
