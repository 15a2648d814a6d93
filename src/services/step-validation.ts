import type { z } from "zod";
import { ApiError, fieldPath, type ErrorDetail } from "../api/errors";
import { TOO_DEEP_MESSAGE, exceedsJsonDepth } from "../api/json-limits";
import { stepListIssues, type StepSpec } from "../domain/step-spec";
import { validateStepConfig } from "../steps/registry";

type StepIssue = { path: (string | number)[]; message: string };

/**
 * Every step's type known, its config valid for that type (and not nested too deeply to
 * walk), names unique, references backwards. Paths are relative to the step list.
 */
export function stepIssues(steps: StepSpec[]): StepIssue[] {
  const issues: StepIssue[] = [];
  let tooDeep = false;
  steps.forEach((step, index) => {
    if (exceedsJsonDepth(step.config)) {
      tooDeep = true;
      issues.push({ path: [index, "config"], message: TOO_DEEP_MESSAGE });
      return;
    }
    for (const issue of validateStepConfig(step.type, step.config)) issues.push({ path: [index, ...issue.path], message: issue.message });
  });
  // The reference check walks every config recursively: only once they are known to be shallow.
  if (!tooDeep) issues.push(...stepListIssues(steps));
  return issues;
}

/** `superRefine` for a step list in a request schema, so its issues join the other fields'. */
export function refineSteps(steps: StepSpec[], ctx: z.RefinementCtx): void {
  for (const issue of stepIssues(steps)) ctx.addIssue({ code: "custom", path: issue.path, message: issue.message });
}

export function assertValidSteps(steps: StepSpec[], prefix = "steps"): void {
  const details: ErrorDetail[] = stepIssues(steps).map((issue) => ({ field: fieldPath([prefix, ...issue.path]), message: issue.message }));
  if (details.length > 0) {
    throw new ApiError("validation_failed", `Invalid steps: ${details.slice(0, 3).map((d) => `${d.field}: ${d.message}`).join("; ")}`, details);
  }
}
