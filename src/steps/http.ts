import { z } from "zod";
import { decodeUtf8, discardBody, readCapped, safeFetch } from "./safe-fetch";
import { fail, type StepResult, type StepType } from "./step-type";

const HttpConfig = z
  .object({
    url: z.url({ protocol: /^https?$/, error: "url must be an absolute http(s) URL" }),
    method: z.enum(["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"]).optional(),
    headers: z.record(z.string(), z.string()).optional(),
    body: z.unknown().optional(),
  })
  .strict();

/**
 * The most of a response body an `http` step reads and keeps (bytes). A longer body is cut:
 * the stream is cancelled at the cap, the output's `body` is the first HTTP_MAX_BODY_BYTES as
 * text (not parsed as JSON, since it is incomplete) and the output carries `truncated: true`.
 */
export const HTTP_MAX_BODY_BYTES = 64 * 1024;

/** Retry-After is either delay-seconds or an HTTP date. */
export function parseRetryAfter(value: string | null, now = Date.now()): number | undefined {
  if (!value) return undefined;
  if (/^\d+$/.test(value.trim())) return Number(value.trim()) * 1000;
  const at = Date.parse(value);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

/** How an HTTP status maps to a step outcome: 5xx and 429 may pass, other 4xx will not. */
export function classifyHttpStatus(status: number, retryAfter: string | null): StepResult | null {
  if (status < 400) return null;
  const retryAfterMs = status === 429 || status === 503 ? parseRetryAfter(retryAfter) : undefined;
  if (status >= 500 || status === 429 || status === 408) {
    return fail("transient", `HTTP ${status}`, retryAfterMs);
  }
  return fail("permanent", `HTTP ${status}`);
}

export const httpStep: StepType<z.infer<typeof HttpConfig>> = {
  type: "http",
  description:
    "Calls a URL allowed by the destination policy (redirects followed and re-checked, at most 5). 5xx, 429 and network errors are transient (Retry-After honoured); other 4xx and refused destinations are permanent. The output keeps the first 64 KiB of the body (`truncated: true` when cut).",
  configSchema: HttpConfig,
  async execute(config, ctx) {
    const headers = new Headers(config.headers);
    let body: string | undefined;
    if (config.body !== undefined) {
      body = typeof config.body === "string" ? config.body : JSON.stringify(config.body);
      if (!headers.has("content-type") && typeof config.body !== "string") headers.set("content-type", "application/json");
    }
    let response: Response;
    try {
      const fetched = await safeFetch(config.url, { method: config.method ?? (body ? "POST" : "GET"), headers, body, signal: ctx.signal }, ctx.env);
      if (!fetched.ok) return fail("permanent", fetched.refusal.message);
      response = fetched.response;
    } catch (err) {
      if (ctx.signal.aborted) throw err;
      return fail("transient", `network error: ${err instanceof Error ? err.message : String(err)}`);
    }
    const failed = classifyHttpStatus(response.status, response.headers.get("retry-after"));
    if (failed) {
      await discardBody(response);
      return failed;
    }
    const { bytes, truncated } = await readCapped(response, HTTP_MAX_BODY_BYTES);
    const text = decodeUtf8(bytes, truncated);
    if (truncated) return { ok: true, output: { status: response.status, body: text, truncated: true } };
    let parsed: unknown = text;
    if (response.headers.get("content-type")?.includes("json")) {
      try {
        parsed = JSON.parse(text);
      } catch {
        parsed = text;
      }
    }
    return { ok: true, output: { status: response.status, body: parsed } };
  },
};
