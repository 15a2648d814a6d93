/** Who a run belongs to and where it runs: the fields every shape of a run starts with. */
import { z } from "zod";
import { PRIORITIES } from "./run-status";

export const RunIdentitySchema = z.object({
  id: z.string(),
  customerId: z.string(),
  projectId: z.string(),
  runType: z.string().nullable(),
  pool: z.string(),
  priority: z.enum(PRIORITIES),
});
export type RunIdentity = z.infer<typeof RunIdentitySchema>;

/** The fields of a RunIdentity, for copying one out of a larger shape. */
export function identityOf(run: RunIdentity): RunIdentity {
  return { id: run.id, customerId: run.customerId, projectId: run.projectId, runType: run.runType, pool: run.pool, priority: run.priority };
}
