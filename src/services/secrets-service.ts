import { and, asc, eq, gt, inArray } from "drizzle-orm";
import type { DrizzleD1Database } from "drizzle-orm/d1";
import type { Principal } from "../domain/principal";
import { DomainError } from "../domain/errors";
import { cursorKey, nameCursor, pageOf } from "../domain/pagination";
import { secrets } from "../db/schema";
import type { StepFailure } from "../domain/run-machine";
import { PLATFORM_SCOPE, SECRET_NAME_PATTERN, customerScope, describeScope, type SecretScope } from "../domain/secrets";
import { openSecret, sealSecret } from "../lib/secrets-crypto";
import { countD1 } from "../lib/usage";

/** The value `.dev.vars.example` sets; a production Worker refuses to store secrets under it. */
export const DEV_SECRETS_KEY = "dev-secrets-key-not-for-production-0123456789";
const MIN_PRODUCTION_KEY_CHARS = 32;
/** Platform secrets may also be Worker secrets / vars named SECRET_<NAME> (`wrangler secret put SECRET_ACME_TOKEN`). */
const WORKER_PREFIX = "SECRET_";

/** The scope a principal's own secrets live in: the admin's are the platform's. */
export const scopeOf = (principal: Principal): SecretScope => (principal.kind === "admin" ? PLATFORM_SCOPE : customerScope(principal.customerId));

/** A platform secret set on the Worker (`SECRET_<NAME>`); an empty value counts as unset. */
export function workerSecret(env: Env, name: string): string | undefined {
  const value = (env as unknown as Record<string, unknown>)[`${WORKER_PREFIX}${name}`];
  return typeof value === "string" && value !== "" ? value : undefined;
}

function workerSecretNames(env: Env): string[] {
  return Object.keys(env)
    .filter((key) => key.startsWith(WORKER_PREFIX) && SECRET_NAME_PATTERN.test(key.slice(WORKER_PREFIX.length)))
    .map((key) => key.slice(WORKER_PREFIX.length))
    .filter((name) => workerSecret(env, name) !== undefined);
}

export interface SecretView {
  name: string;
  /** stored: in the encrypted table (PUT /v1/secrets); worker: a Worker secret SECRET_<NAME> (platform only). */
  source: "stored" | "worker";
  createdAt: string | null;
  updatedAt: string | null;
}

const stored = (row: { name: string; createdAt: number; updatedAt: number }): SecretView => ({
  name: row.name,
  source: "stored",
  createdAt: new Date(row.createdAt).toISOString(),
  updatedAt: new Date(row.updatedAt).toISOString(),
});

export type SecretsResolution = { ok: true; values: Map<string, string> } | { ok: false; failure: StepFailure };

/**
 * Secrets by scope: the customer's own ("customer:<id>") or the platform's ("platform": Worker
 * secrets SECRET_<NAME>, then what the admin stored). Values are written and read here only;
 * nothing this service returns to a route holds one.
 */
/** By name, stored and Worker secrets alike. */
const SECRETS_CURSOR = nameCursor(SECRET_NAME_PATTERN);

export class SecretsService {
  constructor(
    private readonly env: Env,
    private readonly db: DrizzleD1Database,
  ) {}

  /** Why secrets cannot be stored in this deployment, or null. */
  keyProblem(): string | null {
    const key = this.env.SECRETS_KEY;
    if (!key) return "SECRETS_KEY is not set, so secrets cannot be stored: run `wrangler secret put SECRETS_KEY` with a long random value";
    if (this.env.RUNPLANE_ENV === "production") {
      if (key === DEV_SECRETS_KEY) return "SECRETS_KEY is the local development value: set a real one with `wrangler secret put SECRETS_KEY`";
      if (key.length < MIN_PRODUCTION_KEY_CHARS) return `SECRETS_KEY is shorter than ${MIN_PRODUCTION_KEY_CHARS} characters: set a long random one with \`wrangler secret put SECRETS_KEY\``;
    }
    return null;
  }

  async put(principal: Principal, name: string, value: string): Promise<{ created: boolean; secret: SecretView }> {
    const problem = this.keyProblem();
    if (problem) throw new DomainError("misconfigured", problem);
    const scope = scopeOf(principal);
    if (scope === PLATFORM_SCOPE && workerSecret(this.env, name) !== undefined) {
      throw new DomainError("conflict", `secret "${name}" is the Worker secret ${WORKER_PREFIX}${name}: change it with \`wrangler secret put ${WORKER_PREFIX}${name}\``, [{ field: "param.name", message: "set on the Worker" }]);
    }
    const sealed = await sealSecret(this.env.SECRETS_KEY, scope, name, value);
    const now = Date.now();
    const row = await this.db
      .insert(secrets)
      .values({ scope, name, ...sealed, createdAt: now, updatedAt: now })
      .onConflictDoUpdate({ target: [secrets.scope, secrets.name], set: { ...sealed, updatedAt: now } })
      .returning({ name: secrets.name, createdAt: secrets.createdAt, updatedAt: secrets.updatedAt })
      .get();
    return { created: row.createdAt === now && row.updatedAt === now, secret: stored(row) };
  }

  async delete(principal: Principal, name: string): Promise<void> {
    const scope = scopeOf(principal);
    const deleted = await this.db.delete(secrets).where(and(eq(secrets.scope, scope), eq(secrets.name, name))).returning({ name: secrets.name }).all();
    if (deleted.length > 0) return;
    if (scope === PLATFORM_SCOPE && workerSecret(this.env, name) !== undefined) {
      throw new DomainError("conflict", `secret "${name}" is the Worker secret ${WORKER_PREFIX}${name}: remove it with \`wrangler secret delete ${WORKER_PREFIX}${name}\``);
    }
    throw new DomainError("not_found", `secret "${name}" not found`);
  }

  /** Names and times of the principal's own secrets (the admin: the platform's, Worker secrets included), by name. */
  async list(principal: Principal, limit: number, cursor: string | undefined): Promise<{ secrets: SecretView[]; nextCursor: string | null }> {
    const scope = scopeOf(principal);
    const after = cursorKey(SECRETS_CURSOR, cursor);
    const rows = await this.db
      .select({ name: secrets.name, createdAt: secrets.createdAt, updatedAt: secrets.updatedAt })
      .from(secrets)
      .where(and(eq(secrets.scope, scope), after ? gt(secrets.name, after) : undefined))
      .orderBy(asc(secrets.name))
      .limit(limit + 1)
      .all();
    const views = new Map<string, SecretView>(rows.map((r) => [r.name, stored(r)]));
    if (scope === PLATFORM_SCOPE) {
      // A Worker secret is the one steps get, also over a stored one of the same name.
      for (const name of workerSecretNames(this.env)) {
        if (!after || name > after) views.set(name, { name, source: "worker", createdAt: null, updatedAt: null });
      }
    }
    const all = [...views.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    const page = pageOf(all, limit, (last) => SECRETS_CURSOR.encode(last.name));
    return { secrets: page.items, nextCursor: page.nextCursor };
  }

  /** The names among `names` that do not exist in `scope` (what a run or run type may not refer to). */
  async missing(scope: SecretScope, names: readonly string[]): Promise<string[]> {
    const wanted = names.filter((name) => !(scope === PLATFORM_SCOPE && workerSecret(this.env, name) !== undefined));
    if (wanted.length === 0) return [];
    const rows = await this.db
      .select({ name: secrets.name })
      .from(secrets)
      .where(and(eq(secrets.scope, scope), inArray(secrets.name, wanted)))
      .all();
    const found = new Set(rows.map((r) => r.name));
    return wanted.filter((name) => !found.has(name));
  }

  /**
   * The values of `names` in `scope`, for the data plane just before a step runs. Only that
   * scope is looked in. A secret that does not exist fails the attempt as permanent, naming
   * it; one that cannot be decrypted (no or another SECRETS_KEY) as a worker_error.
   */
  async resolve(scope: SecretScope, names: readonly string[]): Promise<SecretsResolution> {
    const values = new Map<string, string>();
    const wanted: string[] = [];
    for (const name of names) {
      const fromWorker = scope === PLATFORM_SCOPE ? workerSecret(this.env, name) : undefined;
      if (fromWorker !== undefined) values.set(name, fromWorker);
      else wanted.push(name);
    }
    if (wanted.length === 0) return { ok: true, values };
    let rows: { name: string; ciphertext: string; iv: string }[];
    try {
      const result = await this.env.DB.prepare(`SELECT name, ciphertext, iv FROM secrets WHERE scope = ? AND name IN (${wanted.map(() => "?").join(", ")})`)
        .bind(scope, ...wanted)
        .all<{ name: string; ciphertext: string; iv: string }>();
      countD1(result);
      rows = result.results;
    } catch (err) {
      return { ok: false, failure: { type: "transient", message: `the step's secrets could not be read: ${err instanceof Error ? err.message : String(err)}` } };
    }
    const byName = new Map(rows.map((r) => [r.name, r]));
    const absent = wanted.filter((name) => !byName.has(name));
    if (absent.length > 0) {
      return { ok: false, failure: { type: "permanent", message: `secret ${absent.map((n) => `"${n}"`).join(", ")} does not exist among ${describeScope(scope)}` } };
    }
    if (!this.env.SECRETS_KEY) return { ok: false, failure: { type: "worker_error", message: `SECRETS_KEY is not set, so secret "${wanted[0]}" cannot be decrypted` } };
    for (const name of wanted) {
      try {
        values.set(name, await openSecret(this.env.SECRETS_KEY, scope, name, byName.get(name)!));
      } catch {
        return { ok: false, failure: { type: "worker_error", message: `secret "${name}" does not decrypt with this deployment's SECRETS_KEY (was the key changed? put the secret again)` } };
      }
    }
    return { ok: true, values };
  }
}
