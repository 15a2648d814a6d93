// The signed-in key, kept for the tab only (sessionStorage: gone when the tab closes, never
// shared with other tabs), and the API client built from it.
import { createRunplaneClient, RunplaneError, type RunplaneClient } from "@runplane/client";

const KEY_ITEM = "runplane.apiKey";

export interface Session {
  client: RunplaneClient;
  apiKey: string;
  /** The admin key sees every customer; a customer key only its own slice. */
  role: "admin" | "customer";
  /** A customer key's customer, once a run of it shows which (the API has no "who am I"). */
  customerId: string | null;
}

export const storedKey = (): string | null => sessionStorage.getItem(KEY_ITEM);
export const forgetKey = () => sessionStorage.removeItem(KEY_ITEM);

export function clientFor(apiKey: string): RunplaneClient {
  // The page's own origin: the dashboard is served by the Worker that serves the API.
  return createRunplaneClient({ baseUrl: location.origin, apiKey, timeoutMs: 15_000 });
}

/**
 * Checks the key against the API and finds its role: GET /v1/customers is admin-only, so 200
 * means the admin key and 403 a customer key; 401 (or anything else) is the API's refusal,
 * thrown as it came.
 */
export async function signIn(apiKey: string): Promise<Session> {
  const client = clientFor(apiKey);
  let role: Session["role"] = "admin";
  try {
    await client.GET("/v1/customers", { params: { query: { limit: 1 } } });
  } catch (err) {
    if (!(err instanceof RunplaneError) || err.status !== 403) throw err;
    role = "customer";
  }
  let customerId: string | null = null;
  if (role === "customer") {
    const { runs } = await client.GET("/v1/runs", { params: { query: { limit: 1 } } });
    customerId = runs[0]?.customerId ?? null;
  }
  sessionStorage.setItem(KEY_ITEM, apiKey);
  return { client, apiKey, role, customerId };
}

/**
 * A call to a route the client's OpenAPI document does not describe (GET /metrics, the
 * OpenMetrics text): the same origin, key and error envelope (RunplaneError), untyped.
 */
export async function callUndocumented<T>(session: Session, method: "GET" | "PUT", path: string, body?: unknown): Promise<T> {
  const response = await fetch(new URL(path, location.origin), {
    method,
    headers: { authorization: `Bearer ${session.apiKey}`, ...(body === undefined ? {} : { "content-type": "application/json" }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  let parsed: unknown = text;
  try {
    parsed = text ? JSON.parse(text) : undefined;
  } catch {
    // Not JSON: RunplaneError quotes the text.
  }
  if (!response.ok) throw RunplaneError.fromResponse(response, parsed);
  return parsed as T;
}
