/**
 * Many rows in one D1 statement: the rows travel as one JSON parameter and `json_each` turns
 * them back into rows. D1 runs one query at a time, so its throughput is bounded by statements,
 * not rows (README, "Capacity"); and one parameter sidesteps the 100-parameter limit.
 */

/** Well under D1's 2,000,000-byte limit on one value, leaving room for the text's growth in UTF-8. */
const MAX_CHUNK_CHARS = 500_000;

/** `INSERT INTO t (columns) SELECT <this> FROM json_each(?1) WHERE true …`: column i from each row's i-th element. */
export const selectFromJson = (columns: readonly string[]) => columns.map((_, i) => `json_extract(value, '$[${i}]')`).join(", ");

/** The rows as JSON arrays of at most `maxChars` each: a statement per chunk. */
export function jsonChunks(rows: readonly unknown[][], maxChars = MAX_CHUNK_CHARS): string[] {
  const chunks: string[] = [];
  let parts: string[] = [];
  let size = 2;
  for (const row of rows) {
    const text = JSON.stringify(row);
    if (parts.length > 0 && size + text.length + 1 > maxChars) {
      chunks.push(`[${parts.join(",")}]`);
      parts = [];
      size = 2;
    }
    parts.push(text);
    size += text.length + 1;
  }
  if (parts.length > 0) chunks.push(`[${parts.join(",")}]`);
  return chunks;
}
