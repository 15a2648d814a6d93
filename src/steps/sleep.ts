import { z } from "zod";
import type { StepType } from "./step-type";

const SleepConfig = z
  .object({ durationMs: z.number().int().min(0).max(30 * 24 * 3600 * 1000) })
  .strict();

/** A durable timer: the run object's alarm ends it, so no worker is held while it waits. */
export const sleepStep: StepType<z.infer<typeof SleepConfig>> = {
  type: "sleep",
  description: "Waits durationMs on the run object's alarm; the run shows `waiting` meanwhile.",
  configSchema: SleepConfig,
  durable: { wakeAfterMs: (config) => config.durationMs },
  async execute() {
    throw new Error("sleep steps are carried out by the run object, never by a worker");
  },
};
