import { createRoute, z } from "@hono/zod-openapi";
import type { App } from "../context";
import { json } from "../openapi";

const live = createRoute({
  method: "get",
  path: "/health",
  tags: ["health"],
  summary: "Liveness: the Worker answers",
  responses: { 200: json(z.object({ status: z.literal("ok") }), "Alive") },
});

const ReadySchema = z.object({
  status: z.enum(["ok", "failing"]),
  checks: z.record(z.string(), z.object({ ok: z.boolean(), error: z.string().optional() })),
});

const ready = createRoute({
  method: "get",
  path: "/health/ready",
  tags: ["health"],
  summary: "Readiness: D1, Durable Objects and queue bindings answer",
  responses: { 200: json(ReadySchema, "Ready"), 503: json(ReadySchema, "Something named in `checks` failed") },
});

async function check(fn: () => Promise<unknown> | unknown): Promise<{ ok: boolean; error?: string }> {
  try {
    await fn();
    return { ok: true };
  } catch (err) {
    return { ok: false, error: err instanceof Error ? err.message : String(err) };
  }
}

export function registerHealth(app: App) {
  app.openapi(live, (c) => c.json({ status: "ok" as const }, 200));
  app.openapi(ready, async (c) => {
    const env = c.env;
    const checks = {
      d1: await check(() => env.DB.prepare("SELECT 1").first()),
      durableObjects: await check(() => env.CUSTOMER_LEDGER.get(env.CUSTOMER_LEDGER.idFromName("__health__")).summary()),
      queues: await check(() => {
        for (const name of ["JOBS_STANDARD", "DLQ_STANDARD", "EVENTS"] as const) {
          if (typeof env[name]?.send !== "function") throw new Error(`queue binding ${name} is missing`);
        }
      }),
    };
    const ok = Object.values(checks).every((c) => c.ok);
    return c.json({ status: ok ? ("ok" as const) : ("failing" as const), checks }, ok ? 200 : 503);
  });
}
