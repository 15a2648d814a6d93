/**
 * Keyset pagination for every list: a page is the rows after the key of the last row of the
 * page before, and the cursor a client holds is that key, encoded. This is the one place that
 * encodes cursors and checks the ones that come back: a cursor this API could not have made is
 * a validation_failed naming `query.cursor`, never a 500 and never a silent first page.
 */
import { DomainError } from "./errors";

/** Longer than any cursor made here; the query parameter's own limit says the same. */
export const MAX_CURSOR_LENGTH = 500;

export interface CursorCodec<K> {
  encode(key: K): string;
  /** The key a cursor names; throws validation_failed (query.cursor) for one not made by `encode`. */
  decode(cursor: string): K;
}

export function invalidCursor(): DomainError {
  return new DomainError("validation_failed", "cursor is not one this API returned", [{ field: "query.cursor", message: "invalid cursor" }]);
}

function codec<K>(encode: (key: K) => string, parse: (cursor: string) => K | null): CursorCodec<K> {
  return {
    encode,
    decode(cursor) {
      let key: K | null = null;
      if (cursor.length <= MAX_CURSOR_LENGTH) {
        try {
          key = parse(cursor);
        } catch {
          key = null; // undecodable base64 or JSON: the error below
        }
      }
      if (key === null) throw invalidCursor();
      return key;
    },
  };
}

/** Lists ordered by a unique name or id (customers, run types, secrets): the cursor is the last one itself. */
export function nameCursor(pattern: RegExp): CursorCodec<string> {
  return codec(
    (name) => name,
    (cursor) => (pattern.test(cursor) ? cursor : null),
  );
}

/** Where a newest-first list stopped: a time in epoch ms and the row's id, which breaks ties. */
export interface TimeAndId {
  at: number;
  id: string;
}

/**
 * Newest-first lists ordered by (time, id). Two notations, each kept as clients hold it:
 * "base64json" is unpadded base64 of the JSON `[at, id]` (runs); "colon" is `at:id` (dead letters).
 */
export function timeAndIdCursor(idPattern: RegExp, notation: "base64json" | "colon"): CursorCodec<TimeAndId> {
  const valid = (at: unknown, id: unknown): TimeAndId | null =>
    typeof at === "number" && Number.isSafeInteger(at) && at >= 0 && typeof id === "string" && idPattern.test(id) ? { at, id } : null;
  if (notation === "colon") {
    return codec(
      ({ at, id }) => `${at}:${id}`,
      (cursor) => {
        const match = /^(\d{1,16}):(.*)$/s.exec(cursor);
        return match ? valid(Number(match[1]), match[2]) : null;
      },
    );
  }
  return codec(
    ({ at, id }) => btoa(JSON.stringify([at, id])).replace(/=+$/, ""),
    (cursor) => {
      const value = JSON.parse(atob(cursor)) as unknown;
      return Array.isArray(value) && value.length === 2 ? valid(value[0], value[1]) : null;
    },
  );
}

/** The key a request's cursor names; none (absent or empty): the first page. */
export function cursorKey<K>(cursor: CursorCodec<K>, value: string | undefined): K | undefined {
  return value ? cursor.decode(value) : undefined;
}

/**
 * A page out of rows fetched with `limit + 1` (one more than asked tells whether another page
 * exists without a second query): the first `limit` rows, and the cursor after the last of them
 * (null: this is the last page).
 */
export function pageOf<T, C>(rows: readonly T[], limit: number, cursorAfter: (last: T) => C): { items: T[]; nextCursor: C | null } {
  const items = rows.slice(0, limit);
  return { items, nextCursor: rows.length > limit && items.length > 0 ? cursorAfter(items[items.length - 1]!) : null };
}
