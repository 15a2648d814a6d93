/**
 * Every list pages by the one cursor module: pages follow each other without gaps or repeats,
 * and a cursor the API could not have made is a 400 validation_failed naming query.cursor.
 */
import { env } from "cloudflare:workers";
import { beforeAll, describe, expect, it } from "vitest";
import { api, newCustomer } from "../helpers";

let alice: { id: string; key: string };

beforeAll(async () => {
  alice = await newCustomer("pager");
});

async function pageThrough(path: string, list: string, key?: string) {
  const seen: any[] = [];
  const cursors: string[] = [];
  let cursor: string | null = null;
  do {
    const sep = path.includes("?") ? "&" : "?";
    const res: any = await api("GET", `${path}${sep}limit=2${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`, { key });
    expect(res.status).toBe(200);
    seen.push(...res.body[list]);
    cursor = res.body.nextCursor;
    if (cursor) cursors.push(cursor);
  } while (cursor);
  return { seen, cursors };
}

describe("a malformed cursor is 400 validation_failed naming query.cursor, on every list", () => {
  it("GET /v1/runs, /v1/dlq, /v1/customers, /v1/run-types, /v1/secrets", async () => {
    const bad = ["Not A Cursor!", "1:dlq_x:y", "%00", "a".repeat(501), btoa('[1e999,"x"]'), "NaN:"];
    for (const path of ["/v1/runs", "/v1/dlq", "/v1/customers", "/v1/run-types", "/v1/secrets"]) {
      for (const cursor of bad) {
        const res = await api("GET", `${path}?cursor=${encodeURIComponent(cursor)}`);
        expect({ path, cursor, status: res.status, code: res.body.error?.code, fields: res.body.error?.details.map((d: any) => d.field) }).toEqual({
          path,
          cursor,
          status: 400,
          code: "validation_failed",
          fields: ["query.cursor"],
        });
      }
    }
  });
});

describe("pages follow each other", () => {
  it("GET /v1/dlq pages by `deadAt:id`, newest first, ties broken by id; a cursor of before still works", async () => {
    const runType = `pager-${Math.random().toString(36).slice(2, 8)}`;
    const times = [5_000, 4_000, 4_000, 4_000, 3_000];
    const ids = times.map((_, i) => `dlq_${runType.replace(/[^0-9a-z]/g, "")}${String(i).padStart(2, "0")}`);
    for (const [i, id] of ids.entries()) {
      await env.DB.prepare(
        `INSERT INTO dlq_entries (id, run_id, customer_id, run_type, pool, step, failure_type, failure_message, attempts, history, message, dead_at, state)
         VALUES (?1, ?2, ?3, ?4, 'standard', 's', 'permanent', 'boom', 1, '[]', '{}', ?5, 'open')`,
      )
        .bind(id, `run_${String(i).padStart(24, "0")}`, alice.id, runType, times[i])
        .run();
    }
    const { seen, cursors } = await pageThrough(`/v1/dlq?runType=${runType}`, "entries");
    const expected = ids.map((id, i) => ({ id, at: times[i]! })).sort((a, b) => b.at - a.at || (a.id < b.id ? 1 : -1));
    expect(seen.map((e) => e.id)).toEqual(expected.map((e) => e.id));
    for (const cursor of cursors) expect(cursor).toMatch(/^\d+:dlq_[0-9a-z]+$/);
    const second = await api("GET", `/v1/dlq?runType=${runType}&limit=2&cursor=${cursors[0]}`);
    expect(second.body.entries.map((e: any) => e.id)).toEqual(expected.slice(2, 4).map((e) => e.id));
  });

  it("GET /v1/customers pages by id without repeats", async () => {
    for (let i = 0; i < 3; i++) await newCustomer("pager");
    const { seen } = await pageThrough("/v1/customers", "customers");
    const ids = seen.map((c) => c.id);
    expect(new Set(ids).size).toBe(ids.length);
    expect([...ids].sort()).toEqual(ids);
    expect(ids).toContain(alice.id);
  });
});
