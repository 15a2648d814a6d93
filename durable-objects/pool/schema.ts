/**
 * The pool controller's SQLite schema, versioned like the ledger's: each migration brings an
 * object from the version before it, all pending ones in one transaction on wake.
 *  v1: state (policy, scaling history, meter), ready (waiting dispatches), running (admitted
 *      chains and their slot leases), flows (customers' virtual times), outbox (decisions and
 *      samples on their way to D1).
 */
export const POOL_SCHEMA_VERSION = 1;

const BASE = `
  CREATE TABLE IF NOT EXISTS state (id INTEGER PRIMARY KEY CHECK (id = 1), body TEXT NOT NULL);
  CREATE TABLE IF NOT EXISTS ready (key TEXT PRIMARY KEY, run_id TEXT NOT NULL, step_index INTEGER NOT NULL, dispatch INTEGER NOT NULL,
    customer_id TEXT NOT NULL, priority TEXT NOT NULL, weight REAL NOT NULL, enqueued_at INTEGER NOT NULL);
  CREATE TABLE IF NOT EXISTS running (key TEXT PRIMARY KEY, run_id TEXT NOT NULL, step_index INTEGER NOT NULL, dispatch INTEGER NOT NULL,
    customer_id TEXT NOT NULL, priority TEXT NOT NULL, weight REAL NOT NULL, enqueued_at INTEGER NOT NULL, charge REAL NOT NULL,
    released_at INTEGER NOT NULL, lease_until INTEGER NOT NULL);
  CREATE TABLE IF NOT EXISTS flows (customer_id TEXT PRIMARY KEY, vtime REAL NOT NULL, weight REAL NOT NULL, cost_ms REAL NOT NULL);
  CREATE TABLE IF NOT EXISTS outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, body TEXT NOT NULL);
  CREATE TABLE IF NOT EXISTS schema_meta (version INTEGER NOT NULL);`;

const MIGRATIONS: { version: number; up(storage: DurableObjectStorage): void }[] = [];

/** Creates or upgrades the schema to POOL_SCHEMA_VERSION; idempotent. */
export function ensurePoolSchema(storage: DurableObjectStorage): void {
  storage.transactionSync(() => {
    storage.sql.exec(BASE);
    const version = Number(storage.sql.exec<{ version: number }>("SELECT version FROM schema_meta").toArray()[0]?.version ?? 0);
    if (version >= POOL_SCHEMA_VERSION) return;
    for (const migration of MIGRATIONS) if (migration.version > version) migration.up(storage);
    storage.sql.exec(`DELETE FROM schema_meta; INSERT INTO schema_meta (version) VALUES (${POOL_SCHEMA_VERSION});`);
  });
}
