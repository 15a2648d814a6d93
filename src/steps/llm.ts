import { z } from "zod";
import { MODEL_NAME } from "../domain/token-usage";
import { classifyHttpStatus } from "./http";
import { decodeUtf8, declaredLength, discardBody, readCapped, safeFetch, scrubCredentials, type PolicyEnv } from "./safe-fetch";
import { fail, type StepResult, type StepType, type TokenUsage } from "./step-type";

export const DEFAULT_LLM_BASE_URL = "https://api.openai.com/v1";

const Message = z
  .object({
    role: z.enum(["system", "developer", "user", "assistant"]),
    content: z.string().max(1_000_000),
  })
  .strict();

export const LlmConfig = z
  .object({
    model: z.string().regex(MODEL_NAME, "model must be 1-200 characters: letters, digits and . _ : / @ + -"),
    messages: z.array(Message).min(1).max(1000),
    maxTokens: z.number().int().min(1).max(1_000_000).optional(),
    baseUrl: z.url({ protocol: /^https?$/, error: "baseUrl must be an absolute http(s) URL" }).optional(),
    temperature: z.number().min(0).max(2).optional(),
  })
  .strict();
export type LlmConfig = z.infer<typeof LlmConfig>;
export type LlmMessage = z.infer<typeof Message>;

/** Tokens a message adds beyond its text (role, separators): OpenAI's chat format uses about 4; 8 is a safe bound. */
const TOKENS_PER_MESSAGE = 8;

/** The output limit sent to the endpoint when a step names none, and held for under a hard budget. */
export const DEFAULT_MAX_TOKENS = 4096;

/** What the call may generate at most: the step's `maxTokens`, or DEFAULT_MAX_TOKENS (always sent as `max_tokens`). */
export const maxTokensOf = (config: Pick<LlmConfig, "maxTokens">) => config.maxTokens ?? DEFAULT_MAX_TOKENS;

/**
 * An upper bound, not an estimate: one token per byte of UTF-8 (a byte-level BPE token covers
 * at least one byte), plus the framing of each message. A hard budget holds this much input
 * before the call; the bill always uses the `usage` the endpoint reports.
 */
export function promptTokenBound(messages: readonly { content: string }[]): number {
  const encoder = new TextEncoder();
  return messages.reduce((sum, m) => sum + encoder.encode(m.content).length + TOKENS_PER_MESSAGE, 0);
}

const isCount = (n: unknown): n is number => typeof n === "number" && Number.isSafeInteger(n) && n >= 0;

/**
 * An OpenAI-compatible `usage` object as TokenUsage, each token in exactly one field:
 * uncached input = prompt − cached, output = completion − reasoning (reasoning tokens are
 * part of completion_tokens and are priced on their own line). Null when the counts are
 * missing or impossible, because then the call cannot be billed.
 */
export function usageFromCompletion(model: string, usage: unknown): TokenUsage | null {
  if (typeof usage !== "object" || usage === null) return null;
  const u = usage as {
    prompt_tokens?: unknown;
    completion_tokens?: unknown;
    prompt_tokens_details?: { cached_tokens?: unknown } | null;
    completion_tokens_details?: { reasoning_tokens?: unknown } | null;
  };
  if (!isCount(u.prompt_tokens) || !isCount(u.completion_tokens)) return null;
  const cached = u.prompt_tokens_details?.cached_tokens ?? 0;
  const reasoning = u.completion_tokens_details?.reasoning_tokens;
  if (!isCount(cached) || cached > u.prompt_tokens) return null;
  if (reasoning !== undefined && reasoning !== null && (!isCount(reasoning) || reasoning > u.completion_tokens)) return null;
  const result: TokenUsage = {
    model,
    inputTokens: u.prompt_tokens - cached,
    outputTokens: u.completion_tokens - (reasoning ?? 0),
    cachedTokens: cached,
  };
  if (isCount(reasoning)) result.reasoningTokens = reasoning;
  return result;
}

/**
 * The most of a completion the step reads (bytes): a longer body fails the step permanently and
 * is not read further. A completion within the output limit (DEFAULT_MAX_TOKENS) is far smaller.
 */
export const LLM_MAX_RESPONSE_BYTES = 4 * 1024 * 1024;
/** The most of an error body read to find the endpoint's error type, code and message. */
const LLM_MAX_ERROR_BYTES = 16 * 1024;

const PLATFORM_ENDPOINT = "the platform's model endpoint";

/** What a status means, in words that quote nothing the endpoint said. */
function genericPhrase(status: number): string {
  if (status === 401 || status === 403) return "the endpoint refused the platform's credentials";
  if (status === 404) return "model or path not found";
  if (status === 408) return "the endpoint timed out";
  if (status === 413) return "the request is too large for the endpoint";
  if (status === 429) return "rate limited";
  if (status >= 500) return "the endpoint failed";
  return "the endpoint rejected the request";
}

/** `{"error": {"message", "type", "code"}}`, as OpenAI-compatible endpoints send it. */
function errorFields(text: string): { message?: string; type?: string; code?: string } {
  try {
    const error = (JSON.parse(text) as { error?: { message?: unknown; type?: unknown; code?: unknown } })?.error;
    if (typeof error !== "object" || error === null) return {};
    // type and code are identifiers ("invalid_request_error", "invalid_api_key"); anything else is dropped.
    const ident = (v: unknown) => (typeof v === "string" && /^[A-Za-z0-9_.-]{1,64}$/.test(v) ? v : undefined);
    return {
      message: typeof error.message === "string" && error.message ? error.message : undefined,
      type: ident(error.type),
      code: ident(error.code),
    };
  } catch {
    return {}; // not JSON: the status says enough
  }
}

/**
 * Why a call failed, as the tenant sees it. The platform's endpoint is called with the platform's
 * key and its messages can quote key fragments, so they are never passed on: only the status, a
 * generic phrase and the error's type/code. A step's own endpoint is the tenant's: its message is
 * passed on shortened, with anything that looks like a key scrubbed.
 */
function failureDetail(status: number, text: string, platform: boolean, known: readonly (string | undefined)[], tenantSecrets: readonly string[]): string {
  const fields = errorFields(text);
  if (platform) {
    const ids = [fields.type && `type ${fields.type}`, fields.code && `code ${fields.code}`].filter(Boolean).join(", ");
    return `${PLATFORM_ENDPOINT} answered HTTP ${status}: ${genericPhrase(status)}${ids ? ` (${ids})` : ""}`;
  }
  return fields.message ? `: ${scrubCredentials(fields.message, known, tenantSecrets).slice(0, 300)}` : "";
}

const trimSlash = (url: string) => url.replace(/\/+$/, "");

type LlmEnv = Pick<Env, "LLM_BASE_URL" | "LLM_API_KEY"> & PolicyEnv;

/**
 * Calls an OpenAI-compatible chat completions endpoint. The platform's key (LLM_API_KEY) goes
 * only to the platform's endpoint (LLM_BASE_URL, or OpenAI's): a step's own `baseUrl` is
 * chosen by whoever wrote the run, and must not be a way to collect that key. Both go through
 * the destination policy (safeFetch); an operator permits an internal LLM_BASE_URL with
 * DESTINATION_ALLOWLIST.
 */
export async function executeLlm(config: LlmConfig, ctx: { signal: AbortSignal; env: LlmEnv; secretValues?: readonly string[] }): Promise<StepResult> {
  const platformBase = trimSlash(ctx.env.LLM_BASE_URL || DEFAULT_LLM_BASE_URL);
  const base = config.baseUrl ? trimSlash(config.baseUrl) : platformBase;
  const platform = base === platformBase;
  const endpoint = platform ? PLATFORM_ENDPOINT : `${base}/chat/completions`;
  const known = [ctx.env.LLM_API_KEY];
  const headers = new Headers({ "content-type": "application/json" });
  if (ctx.env.LLM_API_KEY && platform) headers.set("authorization", `Bearer ${ctx.env.LLM_API_KEY}`);
  const body: Record<string, unknown> = { model: config.model, messages: config.messages };
  // Always bounded, so what a hard budget held for the call is what it may cost.
  body.max_tokens = maxTokensOf(config);
  if (config.temperature !== undefined) body.temperature = config.temperature;

  let response: Response;
  try {
    const fetched = await safeFetch(`${base}/chat/completions`, { method: "POST", headers, body: JSON.stringify(body), signal: ctx.signal }, ctx.env);
    if (!fetched.ok) {
      const hint = platform && fetched.refusal.hop === 0 ? `; an operator can permit it in DESTINATION_ALLOWLIST` : "";
      return fail("permanent", `${platform ? `${PLATFORM_ENDPOINT} (LLM_BASE_URL): ` : ""}${fetched.refusal.message}${hint}`);
    }
    response = fetched.response;
  } catch (err) {
    if (ctx.signal.aborted) throw err;
    return fail("transient", `network error calling ${platform ? PLATFORM_ENDPOINT : base}: ${scrubCredentials(err instanceof Error ? err.message : String(err), known, ctx.secretValues ?? [])}`);
  }
  const failed = classifyHttpStatus(response.status, response.headers.get("retry-after"));
  if (failed && !failed.ok) {
    const { bytes, truncated } = await readCapped(response, LLM_MAX_ERROR_BYTES);
    const detail = failureDetail(response.status, decodeUtf8(bytes, truncated), platform, known, ctx.secretValues ?? []);
    const message = platform ? detail : `${endpoint} answered HTTP ${response.status}${detail}`;
    return fail(failed.failure.type, message, failed.failure.retryAfterMs);
  }

  const tooLarge = `${endpoint} answered with a body larger than the ${LLM_MAX_RESPONSE_BYTES / (1024 * 1024)} MiB cap (${LLM_MAX_RESPONSE_BYTES} bytes); it was not read further`;
  const length = declaredLength(response);
  if (length !== null && length > LLM_MAX_RESPONSE_BYTES) {
    await discardBody(response);
    return fail("permanent", tooLarge);
  }
  const { bytes, truncated } = await readCapped(response, LLM_MAX_RESPONSE_BYTES);
  if (truncated) return fail("permanent", tooLarge);

  let completion: { model?: unknown; choices?: { message?: { content?: unknown }; finish_reason?: unknown }[]; usage?: unknown };
  try {
    completion = JSON.parse(decodeUtf8(bytes, false));
  } catch {
    return fail("permanent", `${endpoint} answered HTTP ${response.status} with a body that is not JSON`);
  }
  // Priced under the configured model, the one checked against the price list when the run
  // was created; the endpoint often answers with a dated snapshot name ("gpt-4o-2024-08-06").
  const usage = usageFromCompletion(config.model, completion?.usage);
  if (!usage) {
    return fail(
      "permanent",
      "the response has no valid `usage` (prompt_tokens and completion_tokens): the endpoint must report token usage so the call can be billed",
    );
  }
  const choice = Array.isArray(completion.choices) ? completion.choices[0] : undefined;
  const content = choice?.message?.content;
  return {
    ok: true,
    output: {
      content: typeof content === "string" ? content : null,
      finishReason: typeof choice?.finish_reason === "string" ? choice.finish_reason : null,
      model: typeof completion.model === "string" ? completion.model : config.model,
    },
    usage: [usage],
  };
}

export const llmStep: StepType<LlmConfig> = {
  type: "llm",
  description:
    "Calls an OpenAI-compatible chat completions endpoint and records its token usage. 5xx, 429 and network errors are transient (Retry-After honoured); other 4xx are permanent.",
  configSchema: LlmConfig,
  execute: (config, ctx) => executeLlm(config, ctx),
  billedModels: (config) => {
    const model = (config as { model?: unknown } | null)?.model;
    return typeof model === "string" ? [{ model, path: "model" }] : [];
  },
  worstCaseTokens: (config) => [{ model: config.model, promptTokens: promptTokenBound(config.messages), outputTokens: maxTokensOf(config) }],
};
