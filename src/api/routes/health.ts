import { createRoute, z } from "@hono/zod-openapi";
import { bearerToken } from "../auth";
import type { App } from "../context";
import { json, publicRoute } from "../openapi";
import { POOLS } from "../../config/pools";

const live = createRoute({
  method: "get",
  path: "/health",
  operationId: "getHealth",
  tags: ["health"],
  summary: "Liveness: the Worker answers (no I/O, no key)",
  description: "Always 200 while the Worker runs: it reads nothing and needs no key, so no error applies.",
  security: publicRoute,
  responses: { 200: json(z.object({ status: z.literal("ok") }), "Alive") },
});

const Check = z.object({ ok: z.boolean(), error: z.string().optional() });

const ReadySchema = z.object({
  status: z.enum(["ok", "failing"]),
  checks: z
    .object({ config: Check, d1: Check, durableObjects: Check, queues: Check })
    .optional()
    .openapi({ description: "Admin key only: each check, with its error text when it failed" }),
  checkedAt: z.string().optional().openapi({ description: "Admin key only: when the checks ran (results are cached for READY_CACHE_MS)" }),
});

const ready = createRoute({
  method: "get",
  path: "/health/ready",
  operationId: "getReadiness",
  tags: ["health"],
  summary: "Readiness: configuration, D1, Durable Objects and queues answer",
  description:
    "Public: `{status}` only. With the admin key: each check, with its error text. Any other Authorization is ignored (no key lookup), so it answers only 200 or 503.",
  security: publicRoute,
  responses: { 200: json(ReadySchema, "Ready"), 503: json(ReadySchema, "A check failed (the admin key sees which)") },
});

/** A probe flood must not become a D1 and Durable Object flood: each isolate checks at most this often. */
export const READY_CACHE_MS = 5_000;

type Checks = z.infer<typeof ReadySchema>["checks"] & {};
interface Readiness {
  ok: boolean;
  checks: Checks;
  checkedAt: number;
}

/** This isolate's last readiness result (or the checks under way, so concurrent probes share them). */
let cached: { at: number; result: Promise<Readiness> } | null = null;

/** Tests: forget the cached result. */
export function clearReadinessCache() {
  cached = null;
}

async function check(fn: () => Promise<unknown> | unknown): Promise<{ ok: boolean; error?: string }> {
  try {
    await fn();
    return { ok: true };
  } catch (err) {
    return { ok: false, error: err instanceof Error ? err.message : String(err) };
  }
}

async function runChecks(env: Env, misconfiguration: string | null): Promise<Readiness> {
  const [config, d1, durableObjects, queues] = await Promise.all([
    check(() => {
      if (misconfiguration) throw new Error(misconfiguration);
    }),
    check(() => env.DB.prepare("SELECT 1").first()),
    check(() => env.CUSTOMER_LEDGER.get(env.CUSTOMER_LEDGER.idFromName("__health__")).summary()),
    check(() => {
      // Every pool's job and dead-letter queues, and the events queue.
      for (const pool of Object.values(POOLS)) {
        for (const [what, queue] of [["job", pool.jobs(env)], ["dead-letter", pool.deadLetters(env)]] as const) {
          if (typeof queue?.send !== "function") throw new Error(`pool ${pool.name}'s ${what} queue binding is missing`);
        }
      }
      if (typeof env.EVENTS?.send !== "function") throw new Error("queue binding EVENTS is missing");
    }),
  ]);
  const checks = { config, d1, durableObjects, queues };
  return { ok: Object.values(checks).every((c) => c.ok), checks, checkedAt: Date.now() };
}

export function registerHealth(app: App) {
  app.openapi(live, (c) => c.json({ status: "ok" as const }, 200));
  app.openapi(ready, async (c) => {
    const now = Date.now();
    if (!cached || now - cached.at >= READY_CACHE_MS) {
      cached = { at: now, result: runChecks(c.env, c.get("services").auth.misconfiguration()) };
    }
    const readiness = await cached.result;
    const status = readiness.ok ? ("ok" as const) : ("failing" as const);
    const code = readiness.ok ? 200 : 503;
    // Only the admin key sees what failed and why: error text names internals. Any other
    // Authorization is ignored here (no key lookup: readiness costs no D1 read per probe).
    const token = bearerToken(c.req.header("authorization"));
    if (token && c.get("services").auth.isAdmin(token)) {
      return c.json({ status, checks: readiness.checks, checkedAt: new Date(readiness.checkedAt).toISOString() }, code);
    }
    return c.json({ status }, code);
  });
}
