/**
 * The one way a step reaches the network: every URL (and every redirect hop) is checked against
 * the destination policy (src/domain/destination-policy.ts) before anything is sent, redirects
 * are followed here (at most MAX_REDIRECTS) instead of by fetch, and bodies are read with a
 * byte cap. Used by the `http` and `llm` steps; a custom step type that calls out should use it too.
 */
import {
  checkDestination,
  parseAllowlist,
  type DestinationPolicy,
  type DestinationRule,
} from "../domain/destination-policy";
import { log } from "../lib/log";
import { scrubSecrets } from "../domain/secrets";

/** The settings the policy is built from (all optional: absent means the production default). */
export interface PolicyEnv {
  RUNPLANE_ENV?: string;
  DESTINATION_ALLOWLIST?: string;
  WORKER_HOSTNAMES?: string;
}

export const MAX_REDIRECTS = 5;

// ---------------------------------------------------------------------------------------------
// The Worker's own hostnames

/** Hostnames this isolate has been called on (at most MAX_LEARNED), learned by noteWorkerHostname. */
const learned = new Set<string>();
const MAX_LEARNED = 16;

/**
 * Records a hostname the Worker was called on (from each incoming request), so steps cannot be
 * pointed back at the Worker itself. Per isolate and best effort: a queue consumer in an isolate
 * that served no request knows only WORKER_HOSTNAMES, which is the setting to rely on.
 */
export function noteWorkerHostname(hostname: string): void {
  const host = hostname.toLowerCase();
  if (!host || learned.has(host) || learned.size >= MAX_LEARNED) return;
  learned.add(host);
}

// ---------------------------------------------------------------------------------------------
// The policy of this deployment

let cached: { key: string; policy: DestinationPolicy } | null = null;
const warnedInvalid = new Set<string>();

export function destinationPolicy(env: PolicyEnv): DestinationPolicy {
  const key = JSON.stringify([env.RUNPLANE_ENV, env.DESTINATION_ALLOWLIST, env.WORKER_HOSTNAMES, [...learned]]);
  if (cached?.key === key) return cached.policy;
  const { entries, invalid } = parseAllowlist(env.DESTINATION_ALLOWLIST);
  for (const entry of invalid) {
    if (warnedInvalid.has(entry)) continue;
    warnedInvalid.add(entry);
    log("destination_allowlist.invalid_entry", { entry }, "warn");
  }
  const policy: DestinationPolicy = {
    allowLoopback: env.RUNPLANE_ENV === "development",
    allowlist: entries,
    ownHostnames: [...(env.WORKER_HOSTNAMES ?? "").split(",").map((h) => h.trim()).filter(Boolean), ...learned],
  };
  cached = { key, policy };
  return policy;
}

// ---------------------------------------------------------------------------------------------
// Fetching with the policy and manual redirects

export interface SafeFetchInit {
  method: string;
  headers?: HeadersInit;
  body?: string;
  signal: AbortSignal;
}

export interface Refusal {
  rule: DestinationRule | "redirect_limit" | "redirect_location";
  /** Complete, tenant-safe: names the rule and the host, never a path or query. */
  message: string;
  /** 0: the URL itself; n: the n-th redirect's Location. */
  hop: number;
}

export type SafeFetchOutcome = { ok: true; response: Response; url: URL; redirects: number } | { ok: false; refusal: Refusal };

const REDIRECT_STATUSES = new Set([301, 302, 303, 307, 308]);

/** The only request headers kept when a redirect leaves the origin: none of them can carry a credential. */
const CROSS_ORIGIN_SAFE_HEADERS = new Set([
  "accept",
  "accept-encoding",
  "accept-language",
  "cache-control",
  "content-language",
  "content-type",
  "pragma",
  "user-agent",
]);

const BODY_HEADERS = ["content-type", "content-length", "content-encoding", "content-language", "content-location"];

/** Cancels a body that will not be read, so the connection is released. */
export const discardBody = async (response: Response): Promise<void> => {
  await response.body?.cancel().catch(() => undefined);
};

/**
 * fetch, with the destination policy applied to the URL and to each redirect: redirects are
 * not followed by fetch (`redirect: "manual"`) but here, at most MAX_REDIRECTS of them, each
 * Location resolved against the URL that answered and checked before it is requested. A hop to
 * another origin drops every header not on CROSS_ORIGIN_SAFE_HEADERS (so Authorization, cookies,
 * API-key headers and any header a secret was put in stay with the origin they were meant
 * for); 303, and 301/302 after a POST, continue as a GET without the body (as fetch does).
 * Network errors are thrown, as by fetch; a refusal is returned and nothing is sent for it.
 */
export async function safeFetch(target: string, init: SafeFetchInit, env: PolicyEnv): Promise<SafeFetchOutcome> {
  const policy = destinationPolicy(env);
  const first = checkDestination(target, policy);
  if (!first.ok) return { ok: false, refusal: { rule: first.rule, message: first.message, hop: 0 } };
  let url = first.url;
  let method = init.method.toUpperCase();
  let body = init.body;
  const headers = new Headers(init.headers);
  for (let hop = 0; ; hop++) {
    const response = await fetch(url.href, { method, headers: new Headers(headers), body, signal: init.signal, redirect: "manual" });
    const location = REDIRECT_STATUSES.has(response.status) ? response.headers.get("location") : null;
    if (location === null) return { ok: true, response, url, redirects: hop };
    await discardBody(response);
    const from = url.host;
    if (hop >= MAX_REDIRECTS) {
      return { ok: false, refusal: { rule: "redirect_limit", message: `too many redirects: more than ${MAX_REDIRECTS} (last from ${from})`, hop: hop + 1 } };
    }
    let next: URL;
    try {
      next = new URL(location, url);
    } catch {
      return { ok: false, refusal: { rule: "redirect_location", message: `redirect ${hop + 1} from ${from} has a Location that is not a URL`, hop: hop + 1 } };
    }
    const verdict = checkDestination(next, policy);
    if (!verdict.ok) {
      return { ok: false, refusal: { rule: verdict.rule, message: `${verdict.message} (redirect ${hop + 1}, from ${from})`, hop: hop + 1 } };
    }
    if (verdict.url.origin !== url.origin) {
      for (const name of [...headers.keys()]) if (!CROSS_ORIGIN_SAFE_HEADERS.has(name)) headers.delete(name);
    }
    if (response.status === 303 ? method !== "HEAD" : (response.status === 301 || response.status === 302) && method === "POST") {
      method = "GET";
      body = undefined;
      for (const name of BODY_HEADERS) headers.delete(name);
    }
    url = verdict.url;
  }
}

// ---------------------------------------------------------------------------------------------
// Reading bodies with a cap

/**
 * Reads at most `maxBytes` of a body. Past the cap the rest is never read: the stream is
 * cancelled and `truncated` is set (the bytes up to the cap are returned).
 */
export async function readCapped(response: Response, maxBytes: number): Promise<{ bytes: Uint8Array; truncated: boolean }> {
  const stream = response.body;
  if (!stream) return { bytes: new Uint8Array(0), truncated: false };
  const reader = stream.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  let truncated = false;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      const chunk = value instanceof Uint8Array ? value : new Uint8Array(value as ArrayBuffer);
      if (size + chunk.byteLength > maxBytes) {
        chunks.push(chunk.subarray(0, maxBytes - size));
        size = maxBytes;
        truncated = true;
        await reader.cancel(new Error(`response body larger than ${maxBytes} bytes`)).catch(() => undefined);
        break;
      }
      chunks.push(chunk);
      size += chunk.byteLength;
    }
  } finally {
    reader.releaseLock();
  }
  const bytes = new Uint8Array(size);
  let at = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, at);
    at += chunk.byteLength;
  }
  return { bytes, truncated };
}

/** UTF-8 text of (a prefix of) a body; a character cut in half at the end of a truncated body is left out. */
export const decodeUtf8 = (bytes: Uint8Array, truncated: boolean) => new TextDecoder().decode(bytes, { stream: truncated });

/** The length a response declares, when it declares one. */
export function declaredLength(response: Response): number | null {
  const value = response.headers.get("content-length");
  return value !== null && /^\d+$/.test(value.trim()) ? Number(value.trim()) : null;
}

// ---------------------------------------------------------------------------------------------
// Scrubbing what an endpoint says before a tenant sees it

/**
 * Removes what looks like a credential from text an endpoint sent (an error message quoted in
 * a step failure): `sk-…` style keys, `Bearer …`/`Basic …` values, `key=…`/`"token": "…"`
 * assignments, AWS access key ids, long letter-and-digit tokens, and the exact values in `known`.
 * The tenant's own secret values (`tenantSecrets`) become "[secret]" first, as everywhere else.
 */
export function scrubCredentials(text: string, known: readonly (string | undefined)[] = [], tenantSecrets: readonly string[] = []): string {
  let out = text;
  out = scrubSecrets(out, tenantSecrets);
  for (const value of known) if (value && value.length >= 8) out = out.split(value).join("[redacted]");
  return out
    .replace(/\b(Bearer|Basic|Token)\s+[^\s"',;]+/gi, "$1 [redacted]")
    .replace(/\b(?:sk|pk|rk)[-_][A-Za-z0-9_*.…\-]{2,}/gi, "[redacted key]")
    .replace(/\b(?:AKIA|ASIA)[0-9A-Z]{12,}/g, "[redacted key]")
    .replace(/\b(api[_-]?key|access[_-]?token|secret|password|token)(["']?\s*[:=]\s*["']?)[^\s"',;&]+/gi, "$1$2[redacted]")
    .replace(/[A-Za-z0-9_\-+/=]{32,}/g, (m) => (/\d/.test(m) && /[A-Za-z]/.test(m) ? "[redacted]" : m));
}
