/**
 * The run object's SQLite schema, versioned: created with the run in one statement (every run
 * is a new object, and this is on its create path), upgraded on wake when older.
 *  v2: run, steps, events, outbox (dead letters).
 *  v3: the cost journal (costs, cost_state) and each step's attempt meter.
 *  v4: each step's dispatch resends and platform failures.
 */
import { addColumnIfNotExists } from "../sql";
import { COST_JOURNAL_SCHEMA } from "./cost-journal";

export const SCHEMA_VERSION = 4;

const TABLES = `
  CREATE TABLE IF NOT EXISTS run (id TEXT PRIMARY KEY, definition TEXT NOT NULL, status TEXT NOT NULL,
    started_at INTEGER, finished_at INTEGER, failure TEXT);
  CREATE TABLE IF NOT EXISTS steps (idx INTEGER PRIMARY KEY, status TEXT NOT NULL, attempts INTEGER NOT NULL,
    attempt_base INTEGER NOT NULL, dispatch INTEGER NOT NULL, lease_id TEXT, deadline INTEGER, not_before INTEGER,
    wake_at INTEGER, output TEXT, error TEXT, started_at INTEGER, finished_at INTEGER, history TEXT NOT NULL, meter TEXT,
    resends INTEGER NOT NULL DEFAULT 0, platform_failures INTEGER NOT NULL DEFAULT 0);
  CREATE TABLE IF NOT EXISTS events (seq INTEGER PRIMARY KEY, at INTEGER NOT NULL,
    type TEXT NOT NULL, step TEXT, attempt INTEGER, data TEXT);
  CREATE TABLE IF NOT EXISTS outbox (id INTEGER PRIMARY KEY, queue TEXT NOT NULL, body TEXT NOT NULL);
  ${COST_JOURNAL_SCHEMA}
  CREATE TABLE IF NOT EXISTS schema_meta (version INTEGER NOT NULL);`;

const setVersion = `DELETE FROM schema_meta; INSERT INTO schema_meta (version) VALUES (${SCHEMA_VERSION});`;

/** Idempotent (IF NOT EXISTS): safe on a new object without asking what it holds. */
export function createSchema(storage: DurableObjectStorage) {
  storage.transactionSync(() => storage.sql.exec(`${TABLES} ${setVersion}`));
}

/** Brings an object created by an older version up to SCHEMA_VERSION. */
export function migrateSchema(storage: DurableObjectStorage) {
  const hasMeta = storage.sql.exec("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_meta'").toArray().length > 0;
  const version = hasMeta ? Number(storage.sql.exec<{ version: number }>("SELECT version FROM schema_meta").toArray()[0]?.version ?? 0) : 0;
  if (version >= SCHEMA_VERSION) return;
  storage.transactionSync(() => {
    addColumnIfNotExists(storage, "steps", "meter", "TEXT");
    addColumnIfNotExists(storage, "steps", "resends", "INTEGER NOT NULL DEFAULT 0");
    addColumnIfNotExists(storage, "steps", "platform_failures", "INTEGER NOT NULL DEFAULT 0");
    storage.sql.exec(`${TABLES} ${setVersion}`);
  });
}
