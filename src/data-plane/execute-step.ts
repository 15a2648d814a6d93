import { drizzle } from "drizzle-orm/d1";
import type { StepAssignment } from "../../durable-objects/run/rpc";
import type { JsonValue } from "../domain/input-references";
import { MissingSecretError, scrubSecrets, secretReferences, substituteSecrets } from "../domain/secrets";
import { SecretsService } from "../services/secrets-service";
import { MAX_STEP_TIMEOUT_MS } from "../domain/step-spec";
import { usageBoundsViolation } from "../domain/token-usage";
import { errorMessage, log } from "../lib/log";
import { getStepType } from "../steps/registry";
import { fail, type StepResult } from "../steps/step-type";


export interface LeaseKeeper {
  heartbeat(leaseId: string): Promise<{ ok: boolean; reason?: string }>;
}

/**
 * Runs one attempt: puts the step's secrets into its config (from the run's secret scope
 * only), enforces the step's timeout, keeps the lease alive with heartbeats while the step
 * works, and turns every way a step can end into a StepResult (a throwing executor is a
 * worker_error, an expired timeout a timeout). Whatever the attempt reports back (output,
 * failure message) has every secret value it was given replaced by "[secret]": the values
 * live only in this call.
 */
export async function executeAssignment(assignment: StepAssignment, env: Env, run: LeaseKeeper): Promise<StepResult> {
  const references = secretReferences(assignment.step.config);
  if (references.length === 0) return executeResolved(assignment, env, run);
  const malformed = references.find((r) => r.name === null);
  if (malformed) return fail("permanent", `{{${malformed.reference}}} is not a secret reference (write {{secrets.NAME}})`);
  const names = [...new Set(references.map((r) => r.name!))];
  const resolution = await new SecretsService(env, drizzle(env.DB)).resolve(assignment.secretScope, names);
  if (!resolution.ok) return { ok: false, failure: resolution.failure };
  let config: JsonValue;
  try {
    config = substituteSecrets(assignment.step.config, resolution.values) as JsonValue;
  } catch (err) {
    return fail("permanent", err instanceof MissingSecretError ? err.message : errorMessage(err));
  }
  const values = [...resolution.values.values()];
  const result = await executeResolved({ ...assignment, step: { ...assignment.step, config } }, env, run, values);
  return scrubSecrets(result, values);
}

async function executeResolved(assignment: StepAssignment, env: Env, run: LeaseKeeper, secretValues: readonly string[] = []): Promise<StepResult> {
  const stepType = getStepType(assignment.step.type);
  if (!stepType || stepType.durable) {
    return fail("permanent", `step type "${assignment.step.type}" cannot run on a worker of this deployment`);
  }
  const parsed = stepType.configSchema.safeParse(assignment.step.config);
  if (!parsed.success) {
    return fail("permanent", `config after resolving references is invalid: ${parsed.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ")}`);
  }
  const timeoutMs = Math.min(assignment.step.timeoutMs ?? MAX_STEP_TIMEOUT_MS, MAX_STEP_TIMEOUT_MS);
  const controller = new AbortController();
  const timeout = setTimeout(() => controller.abort(new Error(`step timed out after ${timeoutMs} ms`)), timeoutMs);
  let leaseLost: string | null = null;
  const heartbeats = setInterval(() => {
    run
      .heartbeat(assignment.leaseId)
      .then((reply) => {
        // The run was cancelled or the attempt superseded: stop working (and spending) at once.
        if (!reply.ok && (reply.reason === "run_finished" || reply.reason === "stale_lease")) {
          leaseLost = reply.reason;
          controller.abort(new Error(`the attempt's lease is gone (${reply.reason})`));
        }
      })
      .catch((err) => log("lease.heartbeat_failed", { runId: assignment.runId, step: assignment.step.name, error: errorMessage(err) }, "warn"));
  }, Math.max(250, Math.floor(assignment.leaseMs / 3)));
  try {
    const result = await stepType.execute(parsed.data, {
      runId: assignment.runId,
      stepName: assignment.step.name,
      attempt: assignment.attempt,
      startedAt: assignment.startedAt,
      signal: controller.signal,
      env,
      secretValues,
    });
    // Usage beyond the bounds is a bug or an attack, never a real call: refused, not billed.
    const beyond = result.ok && result.usage ? usageBoundsViolation(result.usage) : null;
    return beyond ? fail("permanent", `the step reported usage beyond the platform's bounds: ${beyond}`) : result;
  } catch (err) {
    if (leaseLost) return fail("cancelled", errorMessage(controller.signal.reason));
    if (controller.signal.aborted) return fail("timeout", errorMessage(controller.signal.reason));
    return fail("worker_error", `step threw: ${errorMessage(err)}`);
  } finally {
    clearTimeout(timeout);
    clearInterval(heartbeats);
  }
}
