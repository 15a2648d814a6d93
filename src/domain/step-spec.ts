import { z } from "zod";
import { referencedSteps } from "./input-references";
import { clientName } from "./names";
import { RetryPolicySchema } from "./retry-policy";
import { PRIORITIES } from "./run-status";

export const MAX_STEPS_PER_RUN = 100;
/** A step attempt runs at most this long (its timeoutMs, when shorter): the consumer aborts it then. */
export const MAX_STEP_TIMEOUT_MS = 900_000;

export const StepSpecSchema = z
  .object({
    name: clientName("step name"),
    type: z.string().min(1).max(64),
    config: z.record(z.string(), z.unknown()).default({}),
    retry: RetryPolicySchema.optional(),
    timeoutMs: z.number().int().min(1).max(MAX_STEP_TIMEOUT_MS).optional(),
  })
  .strict();
export type StepSpec = z.infer<typeof StepSpecSchema>;

export const PrioritySchema = z.enum(PRIORITIES);

/**
 * Structural checks over a step list that single-field schemas cannot make: names unique,
 * references only to earlier steps.
 */
export function stepListIssues(steps: { name: string; config: unknown }[]): { path: (string | number)[]; message: string }[] {
  const issues: { path: (string | number)[]; message: string }[] = [];
  const seen = new Set<string>();
  steps.forEach((step, index) => {
    if (seen.has(step.name)) issues.push({ path: [index, "name"], message: `step name "${step.name}" is used twice` });
    for (const ref of referencedSteps(step.config)) {
      if (!seen.has(ref)) {
        issues.push({ path: [index, "config"], message: `refers to step "${ref}", which does not come before this step` });
      }
    }
    seen.add(step.name);
  });
  return issues;
}
