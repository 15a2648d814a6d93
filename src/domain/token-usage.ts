/**
 * Tokens an AI call used, as a step reports them, with the bounds the platform accepts.
 * Each token is counted in exactly one field, because each field is priced on its own line:
 * `inputTokens` are uncached input tokens (cached ones are in `cachedTokens`), `outputTokens`
 * exclude reasoning tokens (those are in `reasoningTokens`, billed at the model's reasoning
 * price or else its output price).
 *
 * The bounds keep every amount exact in SQLite's 64-bit integers: one line is at most
 * 10,000,000 tokens × 100,000 USD per million (MAX_USD_PER_MILLION) = 1e15 nano-USD, an attempt
 * at most 16 × 4 lines. No model has a context window within two orders of magnitude of the
 * token bound, so a report beyond it is a bug or an attack, never real use.
 */
import { z } from "zod";

export const MAX_TOKENS_PER_FIELD = 10_000_000;
export const MAX_USAGE_ENTRIES = 16;

/** Model names as vendors spell them: "gpt-4o-mini", "claude-sonnet-4", "openai/gpt-4o", "llama-3.1:8b". */
export const MODEL_NAME = /^[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,199}$/;

const tokenCount = z
  .number()
  .int()
  .min(0)
  .max(MAX_TOKENS_PER_FIELD, `at most ${MAX_TOKENS_PER_FIELD.toLocaleString("en-US")} tokens per field: a larger count is not a real call`);

export const TokenUsageSchema = z
  .object({
    model: z.string().regex(MODEL_NAME, "model must be 1-200 characters: letters, digits and . _ : / @ + -"),
    inputTokens: tokenCount,
    outputTokens: tokenCount,
    cachedTokens: tokenCount.optional(),
    reasoningTokens: tokenCount.optional(),
  })
  .strict();
export type TokenUsage = z.infer<typeof TokenUsageSchema>;

export const TokenUsageListSchema = z.array(TokenUsageSchema).max(MAX_USAGE_ENTRIES, `at most ${MAX_USAGE_ENTRIES} usage entries per attempt`);

/** Why `usage` is outside the bounds, naming the field, or null when it is within them. */
export function usageBoundsViolation(usage: unknown): string | null {
  const parsed = TokenUsageListSchema.safeParse(usage);
  if (parsed.success) return null;
  return parsed.error.issues.map((i) => `usage${i.path.map((p) => (typeof p === "number" ? `[${p}]` : `.${String(p)}`)).join("")}: ${i.message}`).join("; ");
}
