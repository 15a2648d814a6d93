import { asc, eq, gt } from "drizzle-orm";
import type { DrizzleD1Database } from "drizzle-orm/d1";
import { z } from "zod";
import { ApiError } from "../api/errors";
import { getPool, poolNames } from "../config/pools";
import { runTypes } from "../db/schema";
import { RetryPolicySchema } from "../domain/retry-policy";
import { PrioritySchema, StepSpecSchema, MAX_STEPS_PER_RUN } from "../domain/step-spec";
import { clientName } from "../domain/names";
import { assertValidSteps, refineSteps } from "./step-validation";

export const RunTypeDefinitionSchema = z
  .object({
    pool: clientName("pool").optional(),
    priority: PrioritySchema.optional(),
    steps: z.array(StepSpecSchema).min(1).max(MAX_STEPS_PER_RUN).superRefine(refineSteps),
    retry: RetryPolicySchema.optional(),
    timeoutMs: z.number().int().min(1).max(900_000).optional(),
  })
  .strict();
export type RunTypeDefinition = z.infer<typeof RunTypeDefinitionSchema>;

export function assertKnownPool(pool: string, field: string) {
  if (!getPool(pool)) {
    throw new ApiError("unprocessable", `pool "${pool}" does not exist; pools: ${poolNames().join(", ")}`, [{ field, message: "unknown pool" }]);
  }
}

export class RunTypesService {
  constructor(private readonly db: DrizzleD1Database) {}

  async put(name: string, definition: RunTypeDefinition) {
    assertValidSteps(definition.steps);
    if (definition.pool) assertKnownPool(definition.pool, "pool");
    const now = Date.now();
    const json = JSON.stringify(definition);
    const row = await this.db
      .insert(runTypes)
      .values({ name, definition: json, createdAt: now, updatedAt: now })
      .onConflictDoUpdate({ target: runTypes.name, set: { definition: json, updatedAt: now } })
      .returning()
      .get();
    return { created: row.createdAt === now && row.updatedAt === now, runType: present(row) };
  }

  async find(name: string): Promise<RunTypeDefinition | null> {
    const row = await this.db.select().from(runTypes).where(eq(runTypes.name, name)).get();
    return row ? (JSON.parse(row.definition) as RunTypeDefinition) : null;
  }

  async get(name: string) {
    const row = await this.db.select().from(runTypes).where(eq(runTypes.name, name)).get();
    if (!row) throw new ApiError("not_found", `run type "${name}" not found`);
    return present(row);
  }

  async list(limit: number, cursor: string | undefined) {
    const rows = await this.db
      .select()
      .from(runTypes)
      .where(cursor ? gt(runTypes.name, cursor) : undefined)
      .orderBy(asc(runTypes.name))
      .limit(limit + 1)
      .all();
    const page = rows.slice(0, limit);
    return { runTypes: page.map(present), nextCursor: rows.length > limit ? page[page.length - 1]!.name : null };
  }
}

function present(row: typeof runTypes.$inferSelect) {
  const def = JSON.parse(row.definition) as RunTypeDefinition;
  return {
    name: row.name,
    pool: def.pool ?? "standard",
    priority: def.priority ?? "normal",
    steps: def.steps,
    retry: def.retry ?? null,
    timeoutMs: def.timeoutMs ?? null,
    createdAt: new Date(row.createdAt).toISOString(),
    updatedAt: new Date(row.updatedAt).toISOString(),
  };
}
