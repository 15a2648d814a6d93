/**
 * @runplane/client: the Runplane HTTP API v1, typed from its OpenAPI document.
 *
 * The types in ./schema.ts are generated (openapi-typescript) and every call goes through
 * openapi-fetch. Written by hand is only what a generator cannot know: failed answers thrown
 * as RunplaneError with the envelope's code, 429s retried after their Retry-After, waiting for
 * a run to end, and paging through lists.
 *
 * Only erasable TypeScript here (no enums, namespaces or parameter properties; the tsconfig's
 * erasableSyntaxOnly holds it to that), so Node runs this file as it is, by type stripping.
 */
import createClient, { type Client, type FetchResponse, type MaybeOptionalInit } from "openapi-fetch";
import type { PathsWithMethod, RequiredKeysOf } from "openapi-typescript-helpers";
import type { components, operations, paths } from "./schema.js";

export type { components, operations, paths };

export type Schemas = components["schemas"];
export type Run = Schemas["Run"];
export type RunStatus = Run["status"];
export type ErrorEnvelope = Schemas["ErrorEnvelope"];
/** A code of the API's error envelope, or `unexpected_response` for an answer that is not one. */
export type ErrorCode = ErrorEnvelope["error"]["code"] | "unexpected_response";
export type ErrorDetail = ErrorEnvelope["error"]["details"][number];

/** Statuses a run does not leave. */
export const TERMINAL_RUN_STATUSES: readonly RunStatus[] = ["succeeded", "failed", "cancelled"];
export const isTerminalRunStatus = (status: RunStatus): boolean => TERMINAL_RUN_STATUSES.includes(status);

/** A failed answer of the API: its status and the envelope's code, message, details and request id. */
export class RunplaneError extends Error {
  override readonly name = "RunplaneError";
  readonly status: number;
  readonly code: ErrorCode;
  readonly details: ErrorDetail[];
  /** Quote it when reporting a problem: the platform's logs carry it. */
  readonly requestId: string | null;
  /** From `Retry-After`, when the answer had one (429, 503). */
  readonly retryAfterMs: number | null;

  constructor(init: { status: number; code: ErrorCode; message: string; details?: ErrorDetail[]; requestId?: string | null; retryAfterMs?: number | null }) {
    super(init.message);
    this.status = init.status;
    this.code = init.code;
    this.details = init.details ?? [];
    this.requestId = init.requestId ?? null;
    this.retryAfterMs = init.retryAfterMs ?? null;
  }

  /** The error a failed answer stands for; `body` is what openapi-fetch parsed of it. */
  static fromResponse(response: Response, body: unknown): RunplaneError {
    const retryAfterMs = parseRetryAfter(response.headers.get("retry-after"));
    const requestId = response.headers.get("x-request-id");
    if (isEnvelope(body)) {
      const { code, message, details, requestId: inBody } = body.error;
      return new RunplaneError({ status: response.status, code, message, details, requestId: inBody ?? requestId, retryAfterMs });
    }
    const text = typeof body === "string" ? body : body === undefined ? "" : JSON.stringify(body);
    return new RunplaneError({
      status: response.status,
      code: "unexpected_response",
      message: `HTTP ${response.status} without the API's error envelope${text ? `: ${text.slice(0, 300)}` : ""}`,
      requestId,
      retryAfterMs,
    });
  }
}

/** waitForRun gave up: the run had not ended in time. */
export class RunWaitTimeoutError extends Error {
  override readonly name = "RunWaitTimeoutError";
  readonly runId: string;
  readonly lastStatus: RunStatus;

  constructor(runId: string, lastStatus: RunStatus, timeoutMs: number) {
    super(`run ${runId} was still ${lastStatus} after ${timeoutMs} ms`);
    this.runId = runId;
    this.lastStatus = lastStatus;
  }
}

export interface RetryOptions {
  /** Retries after a 429, beyond the first attempt (default 3; 0: a 429 is thrown at once). */
  maxRetries?: number;
  /** A 429 asking for a longer wait than this is thrown rather than waited out (default 60 000 ms). */
  maxDelayMs?: number;
}

export interface RunplaneClientOptions {
  /** Where the API is, e.g. http://127.0.0.1:8787 (`npm start`). */
  baseUrl: string;
  /** The admin key or a customer's `rp_` key, sent as `Authorization: Bearer <key>`. */
  apiKey?: string;
  /** Sends each request (default: the global fetch, looked up at call time). */
  fetch?: (request: Request) => Promise<Response>;
  retry?: RetryOptions;
  /** Aborts an attempt that has not answered in this long (default: none, as fetch). */
  timeoutMs?: number;
  headers?: Record<string, string>;
}

type Media = `${string}/${string}`;
type Method = "get" | "put" | "post" | "delete";
/** openapi-fetch's rule for its `init` argument: optional when nothing in it is required. */
type InitParam<Init> = RequiredKeysOf<Init> extends never ? [(Init & { [key: string]: unknown })?] : [Init & { [key: string]: unknown }];
/** An operation of `paths`, as openapi-fetch's FetchResponse takes it. */
type Operation<T> = T extends Record<string | number, any> ? T : never;
/** The successful branch's body (undefined for a 204); distributes over FetchResponse's union. */
type Success<R> = R extends { data: infer D; error?: never } ? ([D] extends [never] ? undefined : D) : never;
/** The body of an operation's successful answer (undefined for 204). */
export type ResponseData<M extends Method, P extends PathsWithMethod<paths, M>> = Success<FetchResponse<Operation<paths[P][M]>, {}, Media>>;

/** Calls one operation; resolves with its successful answer's body, throws RunplaneError otherwise. */
type Call<M extends Method> = <P extends PathsWithMethod<paths, M>, I extends MaybeOptionalInit<paths[P], M>>(
  path: P,
  ...init: InitParam<I>
) => Promise<Success<FetchResponse<Operation<paths[P][M]>, I, Media>>>;

type GetPath = PathsWithMethod<paths, "get">;
/** The list operations: their answer is a page with `nextCursor`. */
export type ListPath = { [P in GetPath]: ResponseData<"get", P> extends { nextCursor: unknown } ? P : never }[GetPath];
/** What one page of a list holds: its one array field's elements. */
export type ListItem<P extends ListPath> = ItemOf<ResponseData<"get", P>>;
type ItemOf<Page> = Page extends object ? { [K in keyof Page]: Page[K] extends readonly (infer I)[] ? I : never }[keyof Page] : never;
/** A list's parameters, the cursor aside: the pager sets it. */
export type ListInit<P extends ListPath> = MaybeOptionalInit<paths[P], "get">;

/** The query parameter each list takes its next page's cursor in, where it is not `cursor`. */
const CURSOR_PARAMETER: Partial<Record<ListPath, string>> = { "/v1/runs/{id}/events": "after" };

export interface WaitForRunOptions {
  /** Between polls (default 500 ms). */
  intervalMs?: number;
  /** Gives up with RunWaitTimeoutError after this long (default 60 000 ms). */
  timeoutMs?: number;
  /** Stops waiting (the promise rejects with the signal's reason). */
  signal?: AbortSignal;
}

export interface RunplaneClient {
  /** The generated openapi-fetch client: `{ data, error, response }` per call, failed answers not thrown. */
  readonly api: Client<paths, Media>;
  readonly GET: Call<"get">;
  readonly POST: Call<"post">;
  readonly PUT: Call<"put">;
  readonly DELETE: Call<"delete">;
  /** Polls a run until it is succeeded, failed or cancelled, and returns it. */
  waitForRun(id: string, options?: WaitForRunOptions): Promise<Run>;
  /** Every page of a list, following `nextCursor` until it is null. */
  pages<P extends ListPath>(path: P, ...init: InitParam<ListInit<P>>): AsyncGenerator<ResponseData<"get", P>, void, undefined>;
  /** Every element of a list, page after page. */
  items<P extends ListPath>(path: P, ...init: InitParam<ListInit<P>>): AsyncGenerator<ListItem<P>, void, undefined>;
}

export function createRunplaneClient(options: RunplaneClientOptions): RunplaneClient {
  const send = options.fetch ?? ((request: Request) => globalThis.fetch(request));
  const api = createClient<paths, Media>({
    baseUrl: options.baseUrl,
    headers: { ...options.headers, ...(options.apiKey ? { authorization: `Bearer ${options.apiKey}` } : {}) },
    fetch: retryingFetch(withTimeout(send, options.timeoutMs), options.retry),
  });

  const call = async (method: Method, path: string, init: unknown): Promise<any> => {
    const { data, error, response } = await (api.request as (method: Method, path: string, init: unknown) => Promise<{ data?: unknown; error?: unknown; response: Response }>)(method, path, init);
    if (!response.ok) throw RunplaneError.fromResponse(response, error);
    return data;
  };
  const GET = ((path: string, init?: unknown) => call("get", path, init)) as Call<"get">;

  async function* pages(path: ListPath, init?: unknown): AsyncGenerator<any, void, undefined> {
    const given = (init ?? {}) as { params?: { query?: Record<string, unknown> } };
    const cursorParameter = CURSOR_PARAMETER[path] ?? "cursor";
    let cursor: unknown = given.params?.query?.[cursorParameter];
    for (;;) {
      const query = { ...given.params?.query, ...(cursor === undefined || cursor === null ? {} : { [cursorParameter]: cursor }) };
      const page = await call("get", path, { ...given, params: { ...given.params, query } });
      yield page;
      cursor = page.nextCursor;
      if (cursor === null || cursor === undefined) return;
    }
  }

  async function* items(path: ListPath, init?: unknown): AsyncGenerator<any, void, undefined> {
    for await (const page of pages(path, init)) {
      const list = Object.values(page as object).find(Array.isArray);
      if (list) yield* list;
    }
  }

  async function waitForRun(id: string, { intervalMs = 500, timeoutMs = 60_000, signal }: WaitForRunOptions = {}): Promise<Run> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const { run } = await GET("/v1/runs/{id}", { params: { path: { id } }, ...(signal ? { signal } : {}) });
      if (isTerminalRunStatus(run.status)) return run;
      if (Date.now() + intervalMs > deadline) throw new RunWaitTimeoutError(id, run.status, timeoutMs);
      await sleep(intervalMs, signal);
    }
  }

  return {
    api,
    GET,
    POST: ((path: string, init?: unknown) => call("post", path, init)) as Call<"post">,
    PUT: ((path: string, init?: unknown) => call("put", path, init)) as Call<"put">,
    DELETE: ((path: string, init?: unknown) => call("delete", path, init)) as Call<"delete">,
    waitForRun,
    pages: pages as RunplaneClient["pages"],
    items: items as RunplaneClient["items"],
  };
}

/**
 * Sends a request again after a 429, when its Retry-After asks for no more than `maxDelayMs`
 * (a 429 is refused before anything happens, so a POST is safe to resend). Bounded: at most
 * `maxRetries` resends, each after the wait the answer named. Without retries nothing is
 * added to the request's path: it goes out as it came.
 */
function retryingFetch(send: (request: Request) => Promise<Response>, { maxRetries = 3, maxDelayMs = 60_000 }: RetryOptions = {}) {
  if (maxRetries <= 0) return send;
  return async (request: Request): Promise<Response> => {
    for (let retry = 0; ; retry++) {
      const last = retry >= maxRetries;
      // A body can be read once: every attempt but the last sends a copy.
      const response = await send(last ? request : request.clone());
      if (response.status !== 429 || last) return response;
      const waitMs = parseRetryAfter(response.headers.get("retry-after")) ?? Math.min(1000 * 2 ** retry, maxDelayMs);
      if (waitMs > maxDelayMs) return response;
      await response.body?.cancel();
      await sleep(waitMs, request.signal);
    }
  };
}

function withTimeout(send: (request: Request) => Promise<Response>, timeoutMs: number | undefined) {
  if (!timeoutMs) return send;
  return (request: Request) => send(new Request(request, { signal: AbortSignal.any([request.signal, AbortSignal.timeout(timeoutMs)]) }));
}

/** Retry-After as seconds or an HTTP date, in milliseconds from now; null when absent or unreadable. */
export function parseRetryAfter(value: string | null, now = Date.now()): number | null {
  if (value === null || value.trim() === "") return null;
  if (/^\d+$/.test(value.trim())) return Number(value.trim()) * 1000;
  const at = Date.parse(value);
  return Number.isNaN(at) ? null : Math.max(0, at - now);
}

function isEnvelope(body: unknown): body is ErrorEnvelope {
  const error = (body as { error?: { code?: unknown; message?: unknown } } | null)?.error;
  return typeof error?.code === "string" && typeof error.message === "string";
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal!.reason);
    };
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}
