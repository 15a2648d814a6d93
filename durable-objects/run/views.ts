/** The run as its callers see it (GET /v1/runs/:id and every command's reply). */
import type { JsonValue } from "../../src/domain/input-references";
import { identityOf } from "../../src/domain/run-identity";
import type { RunState } from "../../src/domain/run-machine";
import type { JsonObject, RunSnapshot } from "./rpc";

/** What every view of a run starts with (the snapshot, the D1 index row): who, where, and how far. */
export function runHeadline(state: RunState) {
  const def = state.def;
  return {
    ...identityOf(def),
    status: state.status,
    createdAt: def.createdAt,
    startedAt: state.startedAt,
    finishedAt: state.finishedAt,
  };
}

export function snapshotOf(state: RunState, cost: RunSnapshot["cost"]): RunSnapshot {
  const def = state.def;
  return {
    ...runHeadline(state),
    input: def.input as JsonValue,
    metadata: def.metadata as JsonObject,
    failure: state.failure,
    steps: state.steps.map((s) => ({
      name: def.steps[s.index]!.name,
      type: def.steps[s.index]!.type,
      status: s.status,
      attempts: s.attempts,
      output: s.output as JsonValue,
      error: s.error,
      startedAt: s.startedAt,
      finishedAt: s.finishedAt,
    })),
    cost,
  };
}
