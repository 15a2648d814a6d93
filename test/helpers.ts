import { env, exports } from "cloudflare:workers";
import { vi } from "vitest";

export const ADMIN = "test-admin-key";

export async function api(method: string, path: string, options: { key?: string | null; body?: unknown; raw?: string; headers?: Record<string, string> } = {}) {
  const headers: Record<string, string> = { ...options.headers };
  const key = options.key === undefined ? ADMIN : options.key;
  if (key !== null) headers.authorization = `Bearer ${key}`;
  let body: string | undefined;
  if (options.raw !== undefined) body = options.raw;
  else if (options.body !== undefined) body = JSON.stringify(options.body);
  if (body !== undefined && !headers["content-type"]) headers["content-type"] = "application/json";
  const response = await exports.default.fetch(new Request(`https://runplane.test${path}`, { method, headers, body }));
  await assertDocumentedStatus(method, path, response.status);
  const text = await response.text();
  let json: any = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    json = { text };
  }
  return { status: response.status, headers: response.headers, body: json };
}

/** An operation of the served OpenAPI document: how its path matches, and the statuses it lists. */
interface DocumentedOperation {
  method: string;
  template: string;
  pattern: RegExp;
  statuses: string[];
}

let operations: Promise<DocumentedOperation[]> | undefined;

/** The served document's operations, literal paths before templated ones (`/v1/dlq/retry` before `/v1/dlq/{id}`). */
export function documentedOperations(): Promise<DocumentedOperation[]> {
  operations ??= (async () => {
    const doc = (await (await exports.default.fetch(new Request("https://runplane.test/openapi.json"))).json()) as {
      paths: Record<string, Record<string, { responses: Record<string, unknown> }>>;
    };
    const found: DocumentedOperation[] = [];
    for (const [template, item] of Object.entries(doc.paths)) {
      const pattern = new RegExp(`^${template.replace(/\{[^}]+\}/g, "[^/]+")}$`);
      for (const [method, operation] of Object.entries(item)) {
        found.push({ method: method.toUpperCase(), template, pattern, statuses: Object.keys(operation.responses) });
      }
    }
    const params = (template: string) => template.split("{").length;
    return found.sort((a, b) => params(a.template) - params(b.template));
  })();
  return operations;
}

/**
 * Every answer a test sees must be one the OpenAPI document lists for that operation (what a
 * validating proxy would check): a status the code can return and the document lacks fails the
 * test that met it. Paths outside the document (/docs, unknown routes) are not checked.
 */
async function assertDocumentedStatus(method: string, path: string, status: number) {
  const pathname = path.split("?")[0]!;
  const operation = (await documentedOperations()).find((op) => op.method === method.toUpperCase() && op.pattern.test(pathname));
  if (operation && !operation.statuses.includes(String(status))) {
    throw new Error(`${method} ${operation.template} answered ${status}, which the OpenAPI document does not list (it lists ${operation.statuses.join(", ")})`);
  }
}

let counter = 0;
/** A customer with its own API key; ids are unique per test file. */
/** A new customer (with `plan` when given) and its first key. */
export async function newCustomer(prefix = "cust", plan?: Record<string, unknown>) {
  const id = `${prefix}-${++counter}-${Math.random().toString(36).slice(2, 8)}`;
  const res = await api("POST", "/v1/customers", { body: { id, name: `Customer ${id}`, ...(plan ? { plan } : {}) } });
  if (res.status !== 201) throw new Error(`customer create failed: ${res.status} ${JSON.stringify(res.body)}`);
  return { id, key: res.body.apiKey as string, keyId: res.body.keyId as string, customer: res.body.customer };
}

export async function createRun(key: string, body: Record<string, unknown>) {
  const res = await api("POST", "/v1/runs", { key, body: { projectId: "proj", ...body } });
  return res;
}

/** Polls the run until `predicate` holds (real queue delivery takes a few ticks). */
export async function waitForRun(key: string, runId: string, predicate: (run: any) => boolean, timeout = 15_000) {
  return vi.waitUntil(
    async () => {
      const res = await api("GET", `/v1/runs/${runId}`, { key });
      return res.status === 200 && predicate(res.body.run) ? res.body.run : false;
    },
    { timeout, interval: 50 },
  );
}

export const isFinished = (run: any) => ["succeeded", "failed", "cancelled"].includes(run.status);

export async function d1Count(table: string, where = "1 = 1", ...binds: unknown[]): Promise<number> {
  const row = await env.DB.prepare(`SELECT COUNT(*) AS n FROM ${table} WHERE ${where}`).bind(...binds).first<{ n: number }>();
  return row?.n ?? 0;
}

export const synthetic = (name: string, config: Record<string, unknown> = {}, extra: Record<string, unknown> = {}) => ({ name, type: "synthetic", config, ...extra });
