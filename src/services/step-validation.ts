import type { z } from "zod";
import { DomainError, fieldPath, summarizeDetails, type ErrorDetail } from "../domain/errors";
import { TOO_DEEP_MESSAGE, exceedsJsonDepth } from "../domain/json-limits";
import { PLATFORM_SCOPE, SECRET_NAME_MESSAGE, describeScope, secretReferences, type SecretScope } from "../domain/secrets";
import { stepListIssues, type StepSpec } from "../domain/step-spec";
import { getStepType, validateStepConfig } from "../steps/registry";
import type { SecretsService } from "./secrets-service";

type StepIssue = { path: (string | number)[]; message: string };

/** Secret references that could never resolve: a malformed name, or a step the run object carries out itself (it never sees secrets). */
function secretReferenceIssues(step: StepSpec, index: number): StepIssue[] {
  const refs = secretReferences(step.config, [index, "config"]);
  const issues: StepIssue[] = refs
    .filter((r) => r.name === null)
    .map((r) => ({ path: r.path, message: `{{${r.reference}}} is not a secret reference: write {{secrets.NAME}}; ${SECRET_NAME_MESSAGE}` }));
  if (refs.length > 0 && getStepType(step.type)?.durable) {
    issues.push({ path: [index, "config"], message: `a "${step.type}" step runs in the run object, which never sees secrets: only steps that run on workers may reference {{secrets.…}}` });
  }
  return issues;
}

/**
 * Every step's type known, its config valid for that type (and not nested too deeply to
 * walk), names unique, references backwards, secret references well-formed. Paths are
 * relative to the step list.
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
    issues.push(...secretReferenceIssues(step, index));
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
    throw new DomainError("validation_failed", `Invalid steps: ${summarizeDetails(details)}`, details);
  }
}

/** A URL whose origin is written out before any reference: "https://api.acme.example/orders/{{input.id}}". */
const FIXED_ORIGIN = /^https?:\/\/[^/?#\\{]+[/?#]/i;
/** Config fields that choose where a step sends its request (http `url`, llm `baseUrl`, custom types alike). */
const DESTINATION_FIELDS = ["url", "baseUrl"] as const;

/**
 * A step of a platform-wide run type that uses a secret must not let the run's input or an
 * earlier step's output choose where the request goes: otherwise any customer could have the
 * platform's credential sent to its own server.
 */
function destinationIssues(steps: StepSpec[]): StepIssue[] {
  const issues: StepIssue[] = [];
  steps.forEach((step, index) => {
    if (secretReferences(step.config).length === 0) return;
    for (const field of DESTINATION_FIELDS) {
      const value = step.config[field];
      if (typeof value !== "string") continue;
      const firstReference = value.indexOf("{{");
      if (firstReference === -1) continue;
      if (!FIXED_ORIGIN.test(value.slice(0, firstReference))) {
        issues.push({
          path: [index, "config", field],
          message: `this step uses a secret, so its ${field} must name its scheme and host before any {{…}} reference (e.g. "https://api.example.com/items/{{input.id}}")`,
        });
      }
    }
  });
  return issues;
}

/**
 * Every secret the steps reference exists in `scope` (422 naming each field otherwise), and a
 * platform-scoped step list keeps its destinations fixed. `field` names where the steps came
 * from: their own paths ("steps.0.config.headers.authorization") or a single field ("runType").
 */
export async function assertStepSecrets(secrets: SecretsService, scope: SecretScope, steps: StepSpec[], field: { prefix: string } | { field: string }): Promise<void> {
  const refs = steps.flatMap((step, index) => secretReferences(step.config, [index, "config"]).map((r) => ({ ...r, step: step.name })));
  if (refs.length === 0) return;
  const where = (path: (string | number)[]) => ("prefix" in field ? fieldPath([field.prefix, ...path]) : field.field);
  const details: ErrorDetail[] = [];
  if (scope === PLATFORM_SCOPE) for (const issue of destinationIssues(steps)) details.push({ field: where(issue.path), message: issue.message });
  const missing = new Set(await secrets.missing(scope, [...new Set(refs.flatMap((r) => (r.name ? [r.name] : [])))]));
  const hint = scope === PLATFORM_SCOPE ? "" : " (steps given inline and a customer's own run types can use only that customer's secrets: PUT /v1/secrets/NAME with its key)";
  for (const ref of refs) {
    if (ref.name && missing.has(ref.name)) {
      details.push({ field: where(ref.path), message: `step "${ref.step}" refers to secret "${ref.name}", which does not exist among ${describeScope(scope)}${hint}` });
    }
  }
  if (details.length > 0) throw new DomainError("unprocessable", summarizeDetails(details), details);
}
