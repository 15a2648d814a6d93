import type { z } from "zod";
import { httpStep } from "./http";
import { llmStep } from "./llm";
import { sleepStep } from "./sleep";
import type { StepType } from "./step-type";
import { syntheticStep } from "./synthetic";

const registry = new Map<string, StepType<any>>();

/**
 * Adds a step type. Platform teams call this from `src/steps/custom.ts` (imported by the
 * Worker at start-up) so the control plane validates the type's config and the data plane
 * runs it. Registering a type twice is a programming error.
 */
export function registerStepType<Config>(stepType: StepType<Config>): void {
  if (registry.has(stepType.type)) throw new Error(`step type "${stepType.type}" is already registered`);
  registry.set(stepType.type, stepType);
}

export function getStepType(type: string): StepType<unknown> | undefined {
  return registry.get(type);
}

export function stepTypeNames(): string[] {
  return [...registry.keys()].sort();
}

export type StepConfigIssue = { path: (string | number)[]; message: string };

/** Checks a step's config against its type; issue paths are relative to the step. */
export function validateStepConfig(type: string, config: unknown): StepConfigIssue[] {
  const stepType = registry.get(type);
  if (!stepType) {
    return [{ path: ["type"], message: `unknown step type "${type}"; known types: ${stepTypeNames().join(", ")}` }];
  }
  const parsed = (stepType.configSchema as z.ZodType).safeParse(config ?? {});
  if (parsed.success) return [];
  return parsed.error.issues.map((issue) => ({
    path: ["config", ...issue.path.map((p) => (typeof p === "symbol" ? String(p) : p))],
    message: issue.message,
  }));
}

registerStepType(syntheticStep);
registerStepType(httpStep);
registerStepType(sleepStep);
registerStepType(llmStep);
