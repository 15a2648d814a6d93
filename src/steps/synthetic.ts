import { z } from "zod";
import { TokenUsageSchema } from "../domain/token-usage";
import { delay, fail, type StepType } from "./step-type";

const SyntheticConfig = z
  .object({
    durationMs: z.number().int().min(0).max(900_000).optional(),
    output: z.unknown().optional(),
    failTimes: z.number().int().min(0).max(100).optional().describe("Fail the step's first N attempts."),
    failUntil: z.iso.datetime({ offset: true }).optional().describe("Fail every attempt that starts before this time."),
    failRate: z.number().min(0).max(1).optional().describe("Fail at random with this probability."),
    failKind: z.enum(["transient", "permanent"]).optional(),
    usage: TokenUsageSchema.optional().describe("Token usage the step reports on success, within the platform's bounds."),
  })
  .strict();

/** A step for demos, load and chaos tests: takes time, fails on request, reports token usage. */
export const syntheticStep: StepType<z.infer<typeof SyntheticConfig>> = {
  type: "synthetic",
  description: "Waits durationMs, then succeeds with `output` or fails as configured.",
  configSchema: SyntheticConfig,
  async execute(config, ctx) {
    if (config.durationMs) await delay(config.durationMs, ctx.signal);
    const kind = config.failKind ?? "transient";
    if (config.failTimes !== undefined && ctx.attempt <= config.failTimes) {
      return fail(kind, `synthetic failure: attempt ${ctx.attempt} of the first ${config.failTimes}`);
    }
    if (config.failUntil !== undefined && ctx.startedAt < Date.parse(config.failUntil)) {
      return fail(kind, `synthetic failure: attempt started before ${config.failUntil}`);
    }
    if (config.failRate !== undefined && Math.random() < config.failRate) {
      return fail(kind, `synthetic failure: random at rate ${config.failRate}`);
    }
    return {
      ok: true,
      output: config.output ?? { step: ctx.stepName, attempt: ctx.attempt },
      usage: config.usage ? [config.usage] : undefined,
    };
  },
  billedModels: (config) => {
    const model = (config as { usage?: { model?: unknown } } | null)?.usage?.model;
    return typeof model === "string" ? [{ model, path: "usage.model" }] : [];
  },
  // It reports exactly its configured usage: that is its worst case.
  worstCaseTokens: (config) =>
    config.usage
      ? [{ model: config.usage.model, promptTokens: config.usage.inputTokens + (config.usage.cachedTokens ?? 0), outputTokens: config.usage.outputTokens + (config.usage.reasoningTokens ?? 0) }]
      : [],
};
