#!/usr/bin/env node
/**
 * npm run burst — a burst of runs on one pool of the local runtime, and the pool's scaling
 * timeline: every decision (time, from → to, reason, depth, in flight, utilization) and the
 * depth / in-flight / desired samples, until the pool is back at zero with no timer left.
 *
 *   npm run burst -- --runs 300 --steps 2 --step-ms 200 --pool standard
 *   npm run burst -- --url http://localhost:8787 --admin dev-admin-key   # against a running `npm start`
 *   npm run burst -- --max 20          # PUT the pool's policy with maxConcurrency 20 first (its defaults otherwise)
 */
import { mkdirSync, rmSync } from "node:fs";
import path from "node:path";
import { createRunplaneClient } from "../clients/typescript/src/index.ts";
import { ROOT } from "./lib/root.mjs";
import { applyLocalMigrations, ramDisk, signalGroup, spawnDev, waitForHealth } from "./lib/runtime.mjs";

function parseArgs(argv) {
  const opts = { runs: 300, steps: 2, stepMs: 200, pool: "standard", concurrency: 16, url: null, admin: "burst-admin-key", port: 8789, max: null, sampleMs: 1000 };
  for (let i = 0; i < argv.length; i++) {
    const [flag, inline] = argv[i].split("=");
    const value = () => inline ?? argv[++i];
    switch (flag) {
      case "--runs": opts.runs = Number(value()); break;
      case "--steps": opts.steps = Number(value()); break;
      case "--step-ms": opts.stepMs = Number(value()); break;
      case "--pool": opts.pool = value(); break;
      case "--concurrency": opts.concurrency = Number(value()); break;
      case "--url": opts.url = value(); break;
      case "--admin": opts.admin = value(); break;
      case "--port": opts.port = Number(value()); break;
      case "--max": opts.max = Number(value()); break;
      case "--sample-ms": opts.sampleMs = Number(value()); break;
      default:
        console.error(`unknown flag ${flag}`);
        process.exit(2);
    }
  }
  return opts;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  let stop = () => {};
  let base = opts.url;
  if (!base) {
    // Both Workers, as deployed (the heavy pool's consumer too), on local state that is thrown away after.
    const persist = `${ramDisk() ?? path.join(ROOT, ".wrangler")}/runplane-burst-${process.pid}`;
    rmSync(persist, { recursive: true, force: true });
    applyLocalMigrations({ persist });
    mkdirSync(path.join(ROOT, "bench-results"), { recursive: true });
    const logFile = path.join(ROOT, "bench-results", "burst-dev.log");
    const child = spawnDev({
      port: opts.port,
      persist,
      vars: { ADMIN_API_KEY: opts.admin, RUNPLANE_ENV: "development", LOG_LEVEL: "warn", POOL_SAMPLE_MS: String(opts.sampleMs) },
      logFile,
      extraArgs: ["-c", "wrangler.toml", "-c", "wrangler.heavy.toml"],
    });
    base = `http://127.0.0.1:${opts.port}`;
    stop = () => {
      signalGroup(child);
      rmSync(persist, { recursive: true, force: true });
    };
    const health = await waitForHealth(base, child);
    if (!health.up) throw new Error(`runtime did not start; see ${logFile}`);
  }
  const admin = createRunplaneClient({ baseUrl: base, apiKey: opts.admin, timeoutMs: 30_000 });
  const pool = { params: { path: { name: opts.pool } } };
  try {
    const id = `burst-${Date.now().toString(36)}`;
    const { apiKey } = await admin.POST("/v1/customers", { body: { id, name: "Burst", plan: { rateLimit: { requestsPerSecond: 100_000, burst: 1_000_000 }, maxRunsInFlight: 1_000_000 } } });
    const customer = createRunplaneClient({ baseUrl: base, apiKey, timeoutMs: 30_000 });
    const before = (await admin.GET("/v1/pools/{name}", pool)).pool;
    if (opts.max !== null) await admin.PUT("/v1/pools/{name}/policy", { ...pool, body: { ...before.policy, maxConcurrency: opts.max } });
    const policy = (await admin.GET("/v1/pools/{name}", pool)).pool.policy;
    console.log(`burst: ${opts.runs} runs × ${opts.steps} synthetic steps of ${opts.stepMs} ms on pool ${opts.pool}; policy ${JSON.stringify(policy)}`);
    const t0 = Date.now();
    let next = 0;
    const body = { projectId: "burst", pool: opts.pool, steps: Array.from({ length: opts.steps }, (_, i) => ({ name: `s${i}`, type: "synthetic", config: { durationMs: opts.stepMs } })) };
    const submit = Promise.all(Array.from({ length: opts.concurrency }, async () => {
      while (next < opts.runs) {
        next++;
        await customer.POST("/v1/runs", { body });
      }
    }));
    let submitted = false;
    submit.then(() => { submitted = true; console.log(`  +${((Date.now() - t0) / 1000).toFixed(1)} s  all ${opts.runs} submitted`); });
    let peak = { depth: 0, inFlight: 0, desired: 0 };
    for (;;) {
      await sleep(500);
      const p = (await admin.GET("/v1/pools/{name}", pool)).pool;
      peak = { depth: Math.max(peak.depth, p.depth), inFlight: Math.max(peak.inFlight, p.inFlight), desired: Math.max(peak.desiredConcurrency ?? 0, peak.desired, p.desiredConcurrency) };
      if (p.inFlight > p.desiredConcurrency) console.log(`  !! in flight ${p.inFlight} above desired ${p.desiredConcurrency}`);
      if (submitted && p.depth === 0 && p.inFlight === 0 && p.desiredConcurrency === 0 && p.nextTimerAt === null) break;
      if (Date.now() - t0 > 15 * 60_000) throw new Error("the pool did not come back to zero within 15 minutes");
    }
    const tEnd = Date.now();
    const series = await admin.GET("/v1/pools/{name}/series", { params: { path: { name: opts.pool }, query: { from: new Date(t0 - 1000).toISOString(), to: new Date(tEnd + 1000).toISOString() } } });
    const at = (iso) => `+${((Date.parse(iso) - t0) / 1000).toFixed(1).padStart(5)} s`;
    console.log(`\nscaling decisions (${series.decisions.length}):`);
    console.log("  time      from → to   depth  in flight  utilization  reason");
    for (const d of series.decisions) {
      console.log(`  ${at(d.at)}  ${String(d.from).padStart(4)} → ${String(d.to).padEnd(4)} ${String(d.depth).padStart(6)} ${String(d.inFlight).padStart(10)}  ${d.utilization === null ? "   –" : `${Math.round(d.utilization * 100)}%`.padStart(4)}         ${d.reason}`);
    }
    console.log(`\nsamples (bucket ${series.bucketMs} ms), every ~5 s:`);
    let last = -Infinity;
    for (const p of series.points) {
      const t = Date.parse(p.at);
      if (t - last < 5000 && p !== series.points.at(-1)) continue;
      last = t;
      console.log(`  ${at(p.at)}  depth ${String(p.depth).padStart(4)}  in flight ${String(p.inFlight).padStart(4)}  desired ${String(p.desired).padStart(4)}  rate ${p.processingRate.toFixed(1)} steps/s`);
    }
    console.log(`\npeak depth ${peak.depth}, peak in flight ${peak.inFlight}, peak desired ${peak.desired}; back at zero with no timer +${((tEnd - t0) / 1000).toFixed(1)} s`);
  } finally {
    stop();
  }
}

main().catch((err) => {
  console.error(`burst failed: ${err.message}`);
  process.exit(1);
});
