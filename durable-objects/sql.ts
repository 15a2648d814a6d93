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
