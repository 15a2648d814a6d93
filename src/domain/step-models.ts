/**
 * The models a list of steps will be billed for, each with the request field that names it,
 * so run creation can refuse a model without a price (PricingService.assertKnownModels)
 * instead of running a step nobody can bill. Each step type says which (its `billedModels`).
 */
import { getStepType } from "../steps/registry";

export interface NamedModel {
  model: string;
  field: string;
}

export function modelsNamedBySteps(steps: readonly { type: string; config?: unknown }[], fieldPrefix = "steps"): NamedModel[] {
  return steps.flatMap((step, i) =>
    (getStepType(step.type)?.billedModels?.(step.config ?? {}) ?? []).map(({ model, path }) => ({ model, field: `${fieldPrefix}.${i}.config.${path}` })),
  );
}
