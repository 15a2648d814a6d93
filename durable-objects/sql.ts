import { countUsage } from "../src/lib/usage";

/** A tagged-template helper over a Durable Object's SQLite: values are always bound, never spliced. */
export type SqlRow = Record<string, SqlStorageValue>;

export function sqlHelper(storage: DurableObjectStorage) {
  return function sql<T extends SqlRow = SqlRow>(strings: TemplateStringsArray, ...values: SqlStorageValue[]): T[] {
    const query = strings.reduce((acc, part, i) => acc + (i > 0 ? "?" : "") + part, "");
    const cursor = storage.sql.exec<T>(query, ...values);
    const rows = cursor.toArray();
    countUsage("do_rows_read", cursor.rowsRead);
    countUsage("do_rows_written", cursor.rowsWritten);
    return rows;
  };
}

/** SQLite in a Durable Object binds at most 100 parameters per statement. */
const MAX_BOUND_PARAMETERS = 100;

/**
 * Inserts many rows with as few statements as the parameter limit allows: each exec call has
 * a fixed cost, and the step path writes several rows per command.
 * `statement` is everything before VALUES, e.g. "INSERT INTO steps (a, b)"; `onConflict` what follows them.
 */
export function insertRows(storage: DurableObjectStorage, statement: string, rows: SqlStorageValue[][], onConflict = ""): void {
  if (rows.length === 0) return;
  const width = rows[0]!.length;
  const perStatement = Math.max(1, Math.floor(MAX_BOUND_PARAMETERS / width));
  const tuple = `(${Array(width).fill("?").join(", ")})`;
  for (let i = 0; i < rows.length; i += perStatement) {
    const chunk = rows.slice(i, i + perStatement);
    const cursor = storage.sql.exec(`${statement} VALUES ${chunk.map(() => tuple).join(", ")} ${onConflict}`, ...chunk.flat());
    cursor.toArray();
    countUsage("do_rows_read", cursor.rowsRead);
    countUsage("do_rows_written", cursor.rowsWritten);
  }
}

/** Adds a column unless the table has it already: a migration step that is safe to repeat. */
export function addColumnIfNotExists(storage: DurableObjectStorage, table: string, column: string, type: string): void {
  const columns = storage.sql.exec<{ name: string }>(`PRAGMA table_info(${table})`).toArray().map((c) => c.name);
  if (columns.length > 0 && !columns.includes(column)) storage.sql.exec(`ALTER TABLE ${table} ADD COLUMN ${column} ${type}`);
}
