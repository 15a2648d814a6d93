// A seeded local runtime for the browser tests: wrangler dev --local on a free port with its
// own state directory (so it never meets a running `npm start`), migrated, then seeded through
// the project's client with two customers, their runs, a dead-lettered run that will succeed
// when retried, and two cron ticks so the metrics have samples, an uptime probe and rollups.
import { mkdtempSync, rmSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import type { ChildProcess } from "node:child_process";
// @ts-expect-error plain ESM without types, shared with bench and chaos
import { applyLocalMigrations, ramDisk, signalGroup, spawnDev, waitForHealth } from "../../scripts/lib/runtime.mjs";
import { createRunplaneClient, type RunplaneClient, type Schemas } from "../../clients/typescript/src/index.ts";

export const ADMIN_KEY = "browser-test-admin-key";

export interface Seeded {
  base: string;
  admin: RunplaneClient;
  customers: Record<"acme" | "globex" | "initech", { id: string; apiKey: string }>;
  runs: { acme: string[]; globex: string[] };
  /** The run dead-lettered on purpose: its step fails every attempt before `failUntil`. */
  recovering: { runId: string; failUntil: number };
  logFile: string;
  stop: () => Promise<void>;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

const until = async <T>(what: string, probe: () => Promise<T | undefined | null | false>, timeoutMs = 30_000): Promise<T> => {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
};

/** How long the recovering run's step keeps failing: long enough to be dead-lettered first. */
const FAIL_FOR_MS = 6_000;

export async function startSeededRuntime(): Promise<Seeded> {
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const persist = mkdtempSync(path.join(ramDisk() ?? tmpdir(), "runplane-browser-"));
  const logFile = path.join(persist, "wrangler.log");
  applyLocalMigrations({ persist });
  const child: ChildProcess = spawnDev({ port, persist, logFile, vars: { ADMIN_API_KEY: ADMIN_KEY, RUNPLANE_ENV: "development", LOG_LEVEL: "warn" } });
  const stop = async () => {
    signalGroup(child, "SIGTERM");
    await new Promise((r) => setTimeout(r, 500));
    signalGroup(child, "SIGKILL");
    rmSync(persist, { recursive: true, force: true });
  };
  try {
    const health = await waitForHealth(base, child, { timeoutMs: 90_000, requestTimeoutMs: 2000 });
    if (!health.up) throw new Error(`wrangler dev did not come up on ${base} (${health.exited ? "it exited" : health.last}); log: ${logFile}`);
    const admin = createRunplaneClient({ baseUrl: base, apiKey: ADMIN_KEY, timeoutMs: 15_000 });
    type StepSpec = Schemas["CreateRun"]["steps"] extends (infer S)[] | undefined ? S : never;
    const synthetic = (name: string, config: Record<string, unknown>, retry?: StepSpec["retry"]): StepSpec => ({ name, type: "synthetic", config, ...(retry ? { retry } : {}) });
    await admin.PUT("/v1/run-types/{name}", {
      params: { path: { name: "hello" } },
      body: { steps: [synthetic("fetch", { durationMs: 120, usage: { model: "gpt-4o-mini", inputTokens: 1200, outputTokens: 300 } }), synthetic("store", { durationMs: 40 })] },
    });
    await admin.PUT("/v1/run-types/{name}", {
      params: { path: { name: "flaky" } },
      body: { steps: [synthetic("wobbly", { durationMs: 30, failTimes: 1 }, { maxAttempts: 3, initialDelayMs: 100, maxDelayMs: 500, backoffFactor: 2 })] },
    });

    const customers = {} as Seeded["customers"];
    for (const id of ["acme", "globex", "initech"] as const) {
      const created = await admin.POST("/v1/customers", { body: { id, name: id, plan: { monthlyFeeUsd: "10", pricePerRunUsd: "0.01" }, budget: { monthlyLimitUsd: "50", softThresholds: [0.5, 0.8] } } });
      customers[id] = { id, apiKey: created.apiKey };
    }
    const as = (id: keyof Seeded["customers"]) => createRunplaneClient({ baseUrl: base, apiKey: customers[id].apiKey, timeoutMs: 15_000 });
    const submit = async (id: "acme" | "globex", runType: string, count: number) => {
      const ids: string[] = [];
      for (let i = 0; i < count; i++) ids.push((await as(id).POST("/v1/runs", { body: { projectId: `${id}-web`, runType } })).run.id);
      return ids;
    };
    const runs = { acme: [...(await submit("acme", "hello", 3)), ...(await submit("acme", "flaky", 1))], globex: await submit("globex", "hello", 2) };

    // Fails permanently (so it is dead-lettered at once) until failUntil; a retry after that succeeds.
    const failUntil = Date.now() + FAIL_FOR_MS;
    const { run: recoveringRun } = await as("acme").POST("/v1/runs", {
      body: { projectId: "acme-web", steps: [synthetic("prepare", { durationMs: 20 }), synthetic("deliver", { durationMs: 20, failUntil: new Date(failUntil).toISOString(), failKind: "permanent" })] },
    });

    for (const id of [...runs.acme, ...runs.globex]) await admin.waitForRun(id, { intervalMs: 200, timeoutMs: 30_000 });
    await until("the dead-lettered run's DLQ entry", async () => (await admin.GET("/v1/dlq", { params: { query: { state: "open" } } })).entries.some((e) => e.runId === recoveringRun.id));
    // Cost events, then the cron: pool samples, an uptime probe and API timings, rolled up by the next tick.
    await until("the costs of every run", async () => (await admin.GET("/v1/costs", { params: { query: { groupBy: "customer" } } })).totals.runs >= runs.acme.length + runs.globex.length);
    for (let tick = 0; tick < 2; tick++) {
      await fetch(`${base}/cdn-cgi/local/scheduled`, { signal: AbortSignal.timeout(30_000) });
      await new Promise((r) => setTimeout(r, 1500));
    }
    return { base, admin, customers, runs, recovering: { runId: recoveringRun.id, failUntil }, logFile, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}
