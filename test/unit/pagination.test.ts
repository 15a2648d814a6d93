import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { DomainError } from "../../src/domain/errors";
import { CLIENT_NAME_PATTERN } from "../../src/domain/names";
import { MAX_CURSOR_LENGTH, cursorKey, nameCursor, pageOf, timeAndIdCursor, type CursorCodec } from "../../src/domain/pagination";

const RUN_ID = /^run_[0-9a-z]{24}$/;
const runs = timeAndIdCursor(RUN_ID, "base64json");
const dlq = timeAndIdCursor(/^dlq_[0-9a-z]{1,64}$/, "colon");
const names = nameCursor(CLIENT_NAME_PATTERN);

const runId = fc.stringMatching(/^run_[0-9a-z]{24}$/);
const dlqId = fc.stringMatching(/^dlq_[0-9a-f]{24}$/);
const epochMs = fc.integer({ min: 0, max: 4_102_444_800_000 });

/** What every refused cursor must be: a validation_failed that names query.cursor. */
function expectInvalid<K>(codec: CursorCodec<K>, cursor: string) {
  let thrown: unknown;
  try {
    codec.decode(cursor);
  } catch (err) {
    thrown = err;
  }
  expect(thrown, `cursor ${JSON.stringify(cursor.slice(0, 60))}`).toBeInstanceOf(DomainError);
  const err = thrown as DomainError;
  expect({ code: err.code, fields: err.details.map((d) => d.field) }).toEqual({ code: "validation_failed", fields: ["query.cursor"] });
}

describe("cursors", () => {
  it("round-trip: decode(encode(key)) is the key, for every notation", () => {
    fc.assert(
      fc.property(epochMs, runId, (at, id) => {
        expect(runs.decode(runs.encode({ at, id }))).toEqual({ at, id });
      }),
    );
    fc.assert(
      fc.property(epochMs, dlqId, (at, id) => {
        expect(dlq.decode(dlq.encode({ at, id }))).toEqual({ at, id });
      }),
    );
    fc.assert(
      fc.property(fc.stringMatching(CLIENT_NAME_PATTERN), (name) => {
        expect(names.decode(names.encode(name))).toBe(name);
      }),
    );
  });

  it("keeps the notations clients already hold", () => {
    const id = "run_0123456789abcdefghjkmnpq";
    // The runs list's cursor before this module: unpadded base64 of the JSON [createdAt, id].
    expect(runs.encode({ at: 1_700_000_000_000, id })).toBe(btoa(JSON.stringify([1_700_000_000_000, id])).replace(/=+$/, ""));
    expect(runs.decode(btoa(JSON.stringify([1_700_000_000_000, id])))).toEqual({ at: 1_700_000_000_000, id }); // padded too
    expect(dlq.encode({ at: 1_700_000_000_000, id: "dlq_0123456789abcdef01234567" })).toBe("1700000000000:dlq_0123456789abcdef01234567");
    expect(names.encode("acme")).toBe("acme");
  });

  it("refuses a malformed base64-JSON cursor of every kind as validation_failed naming query.cursor", () => {
    const id = "run_0123456789abcdefghjkmnpq";
    const b64 = (value: unknown) => btoa(JSON.stringify(value));
    for (const cursor of [
      "garbage",
      "!!!!",
      "%%%",
      "a".repeat(MAX_CURSOR_LENGTH + 1),
      btoa("not json"),
      b64({ a: 1 }),
      b64(null),
      b64("x"),
      b64([]),
      b64([1]),
      b64([1, id, 3]),
      b64(["1", id]),
      b64([1.5, id]),
      b64([-1, id]),
      b64([Number.MAX_SAFE_INTEGER + 2, id]),
      btoa('[1e999,"x"]'),
      b64([1, 2]),
      b64([1, "x"]),
      b64([1, `${id}x`]),
      b64([1, id.toUpperCase()]),
      btoa(`[1,"${id}"]`).slice(0, -4),
    ]) {
      expectInvalid(runs, cursor);
    }
  });

  it("refuses a malformed at:id cursor of every kind (the unchecked split(':') this replaces read them as NaN)", () => {
    for (const cursor of ["garbage", ":", "1:", ":dlq_abc", "x:dlq_abc", "1.5:dlq_abc", "-1:dlq_abc", "1:run_abc", "1:dlq_", "1:dlq_abc:extra", "1:dlq_ABC", "99999999999999999:dlq_abc", " 1:dlq_abc", "1:dlq_abc\n"]) {
      expectInvalid(dlq, cursor);
    }
  });

  it("refuses a name cursor that is no name of the list, and any cursor longer than the limit", () => {
    for (const cursor of ["UPPER", "-leading", "has space", "x".repeat(65), "a/b", "'; DROP TABLE customers; --"]) expectInvalid(names, cursor);
    expectInvalid(nameCursor(/^.*$/s), "a".repeat(MAX_CURSOR_LENGTH + 1));
  });

  it("never throws anything but the validation error, whatever the string", () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 600 }), (cursor) => {
        for (const codec of [runs, dlq, names] as CursorCodec<unknown>[]) {
          try {
            codec.decode(cursor);
          } catch (err) {
            expect(err).toBeInstanceOf(DomainError);
            expect((err as DomainError).details[0]!.field).toBe("query.cursor");
          }
        }
      }),
    );
  });

  it("an absent or empty cursor is the first page", () => {
    expect(cursorKey(runs, undefined)).toBeUndefined();
    expect(cursorKey(runs, "")).toBeUndefined();
    expect(() => cursorKey(runs, "x")).toThrow(DomainError);
  });
});

describe("pageOf", () => {
  it("takes `limit` of `limit + 1` rows and names the last one's cursor only when more exist", () => {
    expect(pageOf([1, 2, 3], 2, (n) => `c${n}`)).toEqual({ items: [1, 2], nextCursor: "c2" });
    expect(pageOf([1, 2], 2, (n) => `c${n}`)).toEqual({ items: [1, 2], nextCursor: null });
    expect(pageOf([], 2, (n: number) => `c${n}`)).toEqual({ items: [], nextCursor: null });
    expect(pageOf([{ seq: 7 }, { seq: 8 }], 1, (e) => e.seq)).toEqual({ items: [{ seq: 7 }], nextCursor: 7 });
  });
});
