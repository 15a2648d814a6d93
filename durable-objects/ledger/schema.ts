/**
 * The ledger's SQLite schema, versioned: each migration brings an object from the version
 * before it, all pending ones run in one transaction on the first command after a wake.
 *  v1: budget, spend, alerted (and since-replaced holds and deduplication tables).
 *  v2: runs counted once by (run, seq), holds that expire, runs in flight, the outbox.
 *  v3: which runs in flight know of the budget (`limited`), for the per-customer cap.
 *  v4: cost sub-ledgers (LEDGER_SUBSHARDS). On a sub-ledger: who it is and its report version
 *      counter (`sub_ledger`), its month totals and settled holds / ended runs not yet
 *      acknowledged by the primary (`primary_outbox`, `primary_releases`). On a primary: each
 *      sub-ledger's latest month total (`sub_totals`).
 */
import { addColumnIfNotExists } from "../sql";

export const LEDGER_SCHEMA_VERSION = 4;

const BASE = `
  CREATE TABLE IF NOT EXISTS budget (id INTEGER PRIMARY KEY CHECK (id = 1), limit_nano_usd TEXT, soft_thresholds TEXT NOT NULL);
  CREATE TABLE IF NOT EXISTS spend (month TEXT PRIMARY KEY, nano_usd TEXT NOT NULL);
  CREATE TABLE IF NOT EXISTS alerted (month TEXT NOT NULL, threshold REAL NOT NULL, PRIMARY KEY (month, threshold));
  CREATE TABLE IF NOT EXISTS schema_meta (version INTEGER NOT NULL);`;

const MIGRATIONS: { version: number; up(storage: DurableObjectStorage): void }[] = [
  {
    version: 2,
    // v1 kept holds without expiry (they could leak forever) and deduplicated by event id: both
    // are replaced; what v1 counted stays in spend.
    up: (storage) =>
      storage.sql.exec(`
        DROP TABLE IF EXISTS reservations;
        DROP TABLE IF EXISTS recorded;
        DROP TABLE IF EXISTS batches;
        CREATE TABLE IF NOT EXISTS runs (run_id TEXT PRIMARY KEY, seq INTEGER NOT NULL, months TEXT NOT NULL, updated_at INTEGER NOT NULL);
        CREATE TABLE IF NOT EXISTS holds (id TEXT PRIMARY KEY, run_id TEXT NOT NULL, nano_usd TEXT NOT NULL, expires_at INTEGER NOT NULL);
        CREATE TABLE IF NOT EXISTS active_runs (run_id TEXT PRIMARY KEY, admitted_at INTEGER NOT NULL, limited INTEGER NOT NULL DEFAULT 0);
        CREATE TABLE IF NOT EXISTS outbox (key TEXT PRIMARY KEY, version INTEGER NOT NULL, body TEXT NOT NULL);`),
  },
  { version: 3, up: (storage) => addColumnIfNotExists(storage, "active_runs", "limited", "INTEGER NOT NULL DEFAULT 0") },
  {
    version: 4,
    // Nothing existing moves: a ledger that never was a sub-ledger nor had one gets empty tables.
    up: (storage) =>
      storage.sql.exec(`
        CREATE TABLE IF NOT EXISTS sub_ledger (id INTEGER PRIMARY KEY CHECK (id = 1), customer_id TEXT NOT NULL, sub_ledger INTEGER NOT NULL, report_version INTEGER NOT NULL, reports_sent INTEGER NOT NULL DEFAULT 0);
        CREATE TABLE IF NOT EXISTS primary_outbox (month TEXT PRIMARY KEY, nano_usd TEXT NOT NULL, version INTEGER NOT NULL);
        CREATE TABLE IF NOT EXISTS primary_releases (kind TEXT NOT NULL, id TEXT NOT NULL, PRIMARY KEY (kind, id));
        CREATE TABLE IF NOT EXISTS sub_totals (sub_ledger INTEGER NOT NULL, month TEXT NOT NULL, nano_usd TEXT NOT NULL, version INTEGER NOT NULL, updated_at INTEGER NOT NULL, PRIMARY KEY (sub_ledger, month));`),
  },
];

/** Creates or upgrades the schema to LEDGER_SCHEMA_VERSION; idempotent. */
export function ensureLedgerSchema(storage: DurableObjectStorage): void {
  storage.transactionSync(() => {
    storage.sql.exec(BASE);
    const version = Number(storage.sql.exec<{ version: number }>("SELECT version FROM schema_meta").toArray()[0]?.version ?? 1);
    if (version >= LEDGER_SCHEMA_VERSION) return;
    for (const migration of MIGRATIONS) if (migration.version > version) migration.up(storage);
    storage.sql.exec(`DELETE FROM schema_meta; INSERT INTO schema_meta (version) VALUES (${LEDGER_SCHEMA_VERSION});`);
  });
}
