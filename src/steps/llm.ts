import { z } from "zod";
import { MODEL_NAME } from "../domain/token-usage";
import { classifyHttpStatus } from "./http";
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

/** The endpoint's own error message (`{"error": {"message"}}`), shortened, when it sent one. */
function errorDetail(text: string): string {
  try {
    const message = (JSON.parse(text) as { error?: { message?: unknown } })?.error?.message;
    if (typeof message === "string" && message) return `: ${message.slice(0, 300)}`;
  } catch {
    // not JSON: the status says enough
  }
  return "";
}

const trimSlash = (url: string) => url.replace(/\/+$/, "");

/**
 * Calls an OpenAI-compatible chat completions endpoint. The platform's key (LLM_API_KEY) goes
 * only to the platform's endpoint (LLM_BASE_URL, or OpenAI's): a step's own `baseUrl` is
 * chosen by whoever wrote the run, and must not be a way to collect that key.
 */
export async function executeLlm(config: LlmConfig, ctx: { signal: AbortSignal; env: Pick<Env, "LLM_BASE_URL" | "LLM_API_KEY"> }): Promise<StepResult> {
  const platformBase = trimSlash(ctx.env.LLM_BASE_URL || DEFAULT_LLM_BASE_URL);
  const base = config.baseUrl ? trimSlash(config.baseUrl) : platformBase;
  const headers = new Headers({ "content-type": "application/json" });
  if (ctx.env.LLM_API_KEY && base === platformBase) headers.set("authorization", `Bearer ${ctx.env.LLM_API_KEY}`);
  const body: Record<string, unknown> = { model: config.model, messages: config.messages };
  // Always bounded, so what a hard budget held for the call is what it may cost.
  body.max_tokens = maxTokensOf(config);
  if (config.temperature !== undefined) body.temperature = config.temperature;

  let response: Response;
  try {
    response = await fetch(`${base}/chat/completions`, { method: "POST", headers, body: JSON.stringify(body), signal: ctx.signal });
  } catch (err) {
    if (ctx.signal.aborted) throw err;
    return fail("transient", `network error calling ${base}: ${err instanceof Error ? err.message : String(err)}`);
  }
  const text = await response.text();
  const failed = classifyHttpStatus(response.status, response.headers.get("retry-after"));
  if (failed && !failed.ok) {
    return fail(failed.failure.type, `${base}/chat/completions answered HTTP ${response.status}${errorDetail(text)}`, failed.failure.retryAfterMs);
  }

  let completion: { model?: unknown; choices?: { message?: { content?: unknown }; finish_reason?: unknown }[]; usage?: unknown };
  try {
    completion = JSON.parse(text);
  } catch {
    return fail("permanent", `${base}/chat/completions answered HTTP ${response.status} with a body that is not JSON`);
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
  worstCaseTokens: (config) => [{ model: config.model, promptTokens: promptTokenBound(config.messages), outputTokens: maxTokensOf(config) }],
};
