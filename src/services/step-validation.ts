import { ApiError, fieldPath, type ErrorDetail } from "../api/errors";
import { stepListIssues, type StepSpec } from "../domain/step-spec";
import { validateStepConfig } from "../steps/registry";

/** Every step's type known, its config valid for that type, names unique, references backwards. */
export function assertValidSteps(steps: StepSpec[], prefix = "steps"): void {
  const details: ErrorDetail[] = [];
  steps.forEach((step, index) => {
    for (const issue of validateStepConfig(step.type, step.config)) {
      details.push({ field: fieldPath([prefix, index, ...issue.path]), message: issue.message });
    }
  });
  for (const issue of stepListIssues(steps)) details.push({ field: fieldPath([prefix, ...issue.path]), message: issue.message });
  if (details.length > 0) {
    throw new ApiError("validation_failed", `Invalid steps: ${details.slice(0, 3).map((d) => `${d.field}: ${d.message}`).join("; ")}`, details);
  }
}
