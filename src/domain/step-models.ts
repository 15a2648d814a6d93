/**
 * The models a list of steps will be billed for, each with the request field that names it,
 * so run creation can refuse a model without a price (PricingService.assertKnownModels)
 * instead of running a step nobody can bill.
 */
export interface NamedModel {
  model: string;
  field: string;
}

export function modelsNamedBySteps(steps: readonly { type: string; config?: unknown }[], fieldPrefix = "steps"): NamedModel[] {
  const named: NamedModel[] = [];
  steps.forEach((step, i) => {
    const config = (step.config ?? {}) as { model?: unknown; usage?: { model?: unknown } };
    if (step.type === "llm" && typeof config.model === "string") {
      named.push({ model: config.model, field: `${fieldPrefix}.${i}.config.model` });
    }
    if (step.type === "synthetic" && typeof config.usage?.model === "string") {
      named.push({ model: config.usage.model, field: `${fieldPrefix}.${i}.config.usage.model` });
    }
  });
  return named;
}
