import { and, asc, eq, gt, isNull, or } from "drizzle-orm";
import type { DrizzleD1Database } from "drizzle-orm/d1";
import { z } from "zod";
import type { Principal } from "../domain/principal";
import { DomainError } from "../domain/errors";
import { getPool, poolNames } from "../config/pools";
import { runTypes } from "../db/schema";
import { redactConfig } from "../domain/redaction";
import { RetryPolicySchema } from "../domain/retry-policy";
import { PLATFORM_SCOPE, customerScope, type SecretScope } from "../domain/secrets";
import { PrioritySchema, StepSpecSchema, MAX_STEPS_PER_RUN } from "../domain/step-spec";
import { CLIENT_NAME_PATTERN, clientName } from "../domain/names";
import { cursorKey, nameCursor, pageOf } from "../domain/pagination";
import type { CustomersService } from "./customers-service";
import type { SecretsService } from "./secrets-service";
import { assertStepSecrets, assertValidSteps, refineSteps } from "./step-validation";

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

/** A run type as stored: its owner is null when it is platform-wide. */
export interface StoredRunType {
  name: string;
  owner: string | null;
  definition: RunTypeDefinition;
}

/** Whose secrets a run type's steps may use: the platform's for a platform-wide one, else its owner's. */
export const secretScopeOfOwner = (owner: string | null): SecretScope => (owner === null ? PLATFORM_SCOPE : customerScope(owner));

export function assertKnownPool(pool: string, field: string) {
  if (!getPool(pool)) {
    throw new DomainError("unprocessable", `pool "${pool}" does not exist; pools: ${poolNames().join(", ")}`, [{ field, message: "unknown pool" }]);
  }
}

/** Run types a customer may see (and run): the platform's and its own. */
const visibleTo = (customerId: string) => or(isNull(runTypes.owner), eq(runTypes.owner, customerId));
const ownedBy = (owner: string | null) => (owner === null ? isNull(runTypes.owner) : eq(runTypes.owner, owner));

/**
 * Run types in one namespace, each platform-wide (owner null, written by the admin) or owned
 * by one customer. A customer sees and runs the platform's and its own; another customer's is
 * "not found" to it. Customer-visible views are redacted (src/domain/redaction.ts).
 */
/** By name. */
const RUN_TYPES_CURSOR = nameCursor(CLIENT_NAME_PATTERN);

export class RunTypesService {
  constructor(
    private readonly db: DrizzleD1Database,
    private readonly customers: CustomersService,
    private readonly secrets: SecretsService,
  ) {}

  /**
   * Creates or replaces a run type. The admin writes platform-wide ones, or (`owner`) one
   * owned by a customer; a customer key writes its own. A name held by someone else is not
   * taken over, and a PUT never changes a run type's owner.
   */
  async put(principal: Principal, name: string, definition: RunTypeDefinition, requestedOwner?: string) {
    if (principal.kind === "customer" && requestedOwner !== undefined && requestedOwner !== principal.customerId) {
      throw new DomainError("forbidden", "a customer key may create run types only for itself", [{ field: "query.owner", message: "not your customer" }]);
    }
    const owner = principal.kind === "customer" ? principal.customerId : (requestedOwner ?? null);
    assertValidSteps(definition.steps);
    if (definition.pool) assertKnownPool(definition.pool, "pool");
    if (principal.kind === "admin" && owner !== null && !(await this.customers.exists(owner))) {
      throw new DomainError("unprocessable", `customer "${owner}" does not exist`, [{ field: "query.owner", message: "unknown customer" }]);
    }
    const existing = await this.db.select({ owner: runTypes.owner }).from(runTypes).where(eq(runTypes.name, name)).get();
    if (existing) assertMayReplace(principal, name, existing.owner, owner);
    await assertStepSecrets(this.secrets, secretScopeOfOwner(owner), definition.steps, { prefix: "steps" });
    const now = Date.now();
    const json = JSON.stringify(definition);
    const row = await this.db
      .insert(runTypes)
      .values({ name, definition: json, owner, createdAt: now, updatedAt: now })
      // Only a run type of the same owner is replaced, also when another PUT took the name meanwhile.
      .onConflictDoUpdate({ target: runTypes.name, set: { definition: json, updatedAt: now }, setWhere: ownedBy(owner) })
      .returning()
      .get();
    if (!row) throw new DomainError("conflict", `run type name "${name}" is not available; choose another name`, [{ field: "param.name", message: "taken" }]);
    return { created: row.createdAt === now && row.updatedAt === now, runType: present(row, principal.kind === "customer") };
  }

  /** The run type `name` among those customer `customerId` may run, or null. */
  async findFor(customerId: string, name: string): Promise<StoredRunType | null> {
    const row = await this.db.select().from(runTypes).where(and(eq(runTypes.name, name), visibleTo(customerId))).get();
    return row ? { name: row.name, owner: row.owner, definition: JSON.parse(row.definition) as RunTypeDefinition } : null;
  }

  async get(principal: Principal, name: string) {
    const row = await this.db
      .select()
      .from(runTypes)
      .where(and(eq(runTypes.name, name), principal.kind === "customer" ? visibleTo(principal.customerId) : undefined))
      .get();
    if (!row) throw new DomainError("not_found", `run type "${name}" not found`);
    return present(row, principal.kind === "customer");
  }

  async list(principal: Principal, limit: number, cursor: string | undefined) {
    const after = cursorKey(RUN_TYPES_CURSOR, cursor);
    const rows = await this.db
      .select()
      .from(runTypes)
      .where(and(after ? gt(runTypes.name, after) : undefined, principal.kind === "customer" ? visibleTo(principal.customerId) : undefined))
      .orderBy(asc(runTypes.name))
      .limit(limit + 1)
      .all();
    const page = pageOf(rows, limit, (last) => RUN_TYPES_CURSOR.encode(last.name));
    return { runTypes: page.items.map((row) => present(row, principal.kind === "customer")), nextCursor: page.nextCursor };
  }
}

/** Refuses a PUT over a run type the principal does not own; another customer's is never described. */
function assertMayReplace(principal: Principal, name: string, current: string | null, requested: string | null): void {
  if (principal.kind === "customer") {
    if (current === null) {
      throw new DomainError("forbidden", `run type "${name}" is platform-wide: only the admin key can replace it; choose another name`, [{ field: "param.name", message: "platform-wide" }]);
    }
    if (current !== principal.customerId) {
      throw new DomainError("conflict", `run type name "${name}" is not available; choose another name`, [{ field: "param.name", message: "taken" }]);
    }
    return;
  }
  if (current !== requested) {
    const holder = current === null ? "platform-wide" : `owned by customer "${current}"`;
    const how = current === null ? "without ?owner" : `with ?owner=${current}`;
    throw new DomainError("conflict", `run type "${name}" is ${holder}; a PUT cannot change a run type's owner (PUT ${how} to replace it)`, [{ field: "query.owner", message: "would change the owner" }]);
  }
}

/** A run type as the API shows it; `redact`: a customer's view, with inline credentials hidden. */
function present(row: typeof runTypes.$inferSelect, redact: boolean) {
  const def = JSON.parse(row.definition) as RunTypeDefinition;
  return {
    name: row.name,
    owner: row.owner,
    pool: def.pool ?? "standard",
    priority: def.priority ?? "normal",
    steps: redact ? def.steps.map((step) => ({ ...step, config: redactConfig(step.config) as Record<string, unknown> })) : def.steps,
    retry: def.retry ?? null,
    timeoutMs: def.timeoutMs ?? null,
    createdAt: new Date(row.createdAt).toISOString(),
    updatedAt: new Date(row.updatedAt).toISOString(),
  };
}
