/**
 * What bounds one attempt's cost, from its step's definition: the tokens its type may use at most
 * and the longest it may run. The run object holds the worst case of every attempt it starts
 * (durable-objects/run/run-coordinator.ts); admission holds the run's first step the same way, so
 * a run admitted under a hard budget can always start.
 */
import type { JsonValue } from "../domain/input-references";
import { withSecretPlaceholders } from "../domain/secrets";
import { MAX_STEP_TIMEOUT_MS } from "../domain/step-spec";
import type { WorstCaseTokens } from "../domain/worst-case";
import { getStepType } from "./registry";

export interface AttemptBounds {
  tokens: WorstCaseTokens[];
  timeoutMs: number;
}

export function attemptBounds(
  step: { type: string; timeoutMs?: number },
  /** The step's config with its references resolved; null when they do not resolve. */
  config: JsonValue | null,
  runTimeoutMs: number | undefined,
): AttemptBounds {
  const stepType = getStepType(step.type);
  // Secrets are resolved only on the worker: each reference counts as the longest value a secret may have.
  const parsed = config !== null && stepType ? stepType.configSchema.safeParse(withSecretPlaceholders(config)) : null;
  // A config that cannot run holds nothing beyond its infrastructure: the attempt fails at once.
  const tokens = parsed?.success && stepType?.worstCaseTokens ? stepType.worstCaseTokens(parsed.data) : [];
  return { tokens, timeoutMs: Math.min(step.timeoutMs ?? runTimeoutMs ?? MAX_STEP_TIMEOUT_MS, MAX_STEP_TIMEOUT_MS) };
}

/** The models an attempt's worst case needs prices for. */
export const boundModels = (bounds: AttemptBounds) => bounds.tokens.map((t) => t.model);
