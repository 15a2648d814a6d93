#!/usr/bin/env node
/**
 * npm run bench — Runplane against Cloudflare Workflows, a bare per-run object (the least a
 * per-run Durable Object design does), a bare queue floor and a queue-only
 * chain, on the same workload, in the same local runtime (one wrangler dev process), run
 * interleaved (A B C D A B C D …). Prints a table and writes bench-results/<time>.json.
 *
 *   npm run bench -- --runs 500 --steps 5 --rounds 3 --concurrency 16
 *   npm run bench -- --fail-rate 0.1            # 10% transient failures per step attempt
 *   npm run bench -- --sweep 100,1000,5000      # scaling sweep, one round per size
 *   npm run bench -- --variants runplane,workflows --url http://localhost:8788  # reuse a runtime
 *   npm run bench -- --log-level warn           # LOG_LEVEL for the run (default: wrangler.bench.toml's)
 *   npm run bench -- --idle-after 120           # then idle 120 s and report memory
 */
import { execFileSync } from "node:child_process";
import { mkdirSync, rmSync, writeFileSync, readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { createRunplaneClient } from "../clients/typescript/src/index.ts";
import { ROOT as root } from "./lib/root.mjs";
import { applyLocalMigrations, ramDisk, signalGroup, spawnDev, waitForHealth } from "./lib/runtime.mjs";

const ADMIN = "bench-admin-key";

function parseArgs(argv) {
  const opts = {
    runs: 500,
    steps: 5,
    rounds: 3,
    concurrency: 16,
    failRate: 0,
    variants: ["runplane", "workflows", "object", "floor", "chain"],
    sweep: null,
    port: 8788,
    url: null,
    out: null,
    settleMs: 1500,
    persistTo: null,
    logLevel: null,
    idleMs: 0,
  };
  for (let i = 0; i < argv.length; i++) {
    const [flag, inline] = argv[i].split("=");
    const value = () => inline ?? argv[++i];
    switch (flag) {
      case "--runs": opts.runs = Number(value()); break;
      case "--steps": opts.steps = Number(value()); break;
      case "--rounds": opts.rounds = Number(value()); break;
      case "--concurrency": opts.concurrency = Number(value()); break;
      case "--fail-rate": opts.failRate = Number(value()); break;
      case "--variants": opts.variants = value().split(","); break;
      case "--sweep": opts.sweep = value().split(",").map(Number); break;
      case "--port": opts.port = Number(value()); break;
      case "--url": opts.url = value(); break;
      case "--out": opts.out = value(); break;
      case "--persist-to": opts.persistTo = value(); break;
      case "--log-level": opts.logLevel = value(); break;
      case "--idle-after": opts.idleMs = Number(value()) * 1000; break;
      case "--help": case "-h":
        console.log(readFileSync(fileURLToPath(import.meta.url), "utf8").split("\n").slice(1, 14).join("\n"));
        process.exit(0);
      default:
        console.error(`unknown flag ${flag}; see --help`);
        process.exit(2);
    }
  }
  for (const v of opts.variants) if (!["runplane", "workflows", "object", "floor", "chain"].includes(v)) throw new Error(`unknown variant ${v}`);
  return opts;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const percentile = (sorted, p) => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] : NaN);
const median = (xs) => { const s = [...xs].sort((a, b) => a - b); return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2; };

// ---- the local runtime -------------------------------------------------------------------

async function startRuntime(opts) {
  // Local state on tmpfs when the machine has one: the benchmark measures the platform, not
  // this machine's disk flushes (every variant's storage lives there alike).
  const persist = opts.persistTo ?? (ramDisk() ? `${ramDisk()}/runplane-bench-${process.pid}` : path.join(root, ".wrangler", "bench-state"));
  rmSync(persist, { recursive: true, force: true });
  const config = path.join(root, "bench", "wrangler.bench.toml");
  applyLocalMigrations({ persist, config });
  mkdirSync(path.join(root, "bench-results"), { recursive: true });
  const logFile = path.join(root, "bench-results", "wrangler-dev.log");
  const vars = { ADMIN_API_KEY: ADMIN, ...(opts.logLevel ? { LOG_LEVEL: opts.logLevel } : {}) };
  const child = spawnDev({ port: opts.port, persist, config, vars, logFile });
  const base = `http://127.0.0.1:${opts.port}`;
  const health = await waitForHealth(base, child);
  if (health.exited) throw new Error(`wrangler dev exited (${child.exitCode}); see ${logFile}`);
  if (!health.up) throw new Error(`runtime did not answer /health within 60 s; see ${logFile}`);
  const stop = () => {
    signalGroup(child);
    rmSync(persist, { recursive: true, force: true });
  };
  return { base, child, stop, persist };
}

/** The processes under `pid` (itself included), from ps: pid, parent pid, resident KiB, command. */
function processTree(pid) {
  const rows = execFileSync("ps", ["-eo", "pid=,ppid=,rss=,comm="], { encoding: "utf8" })
    .trim().split("\n").map((l) => l.trim().split(/\s+/)).map(([p, pp, rss, comm]) => ({ pid: +p, ppid: +pp, rss: +rss, comm }));
  const tree = new Set([pid]);
  for (let changed = true; changed;) {
    changed = false;
    for (const r of rows) if (tree.has(r.ppid) && !tree.has(r.pid)) { tree.add(r.pid); changed = true; }
  }
  return rows.filter((r) => tree.has(r.pid));
}

/** CPU seconds used so far by each process under `pid` (itself included), by command and pid. */
function treeCpuSeconds(pid) {
  const out = {};
  if (!pid) return out;
  try {
    for (const r of processTree(pid)) {
      const fields = readFileSync(`/proc/${r.pid}/stat`, "utf8").split(") ")[1].split(" ");
      out[`${r.comm}#${r.pid}`] = (Number(fields[11]) + Number(fields[12])) / 100;
    }
  } catch {}
  return out;
}

/** Resident memory of the workerd processes under `pid` (KiB), from /proc. */
function runtimeRssKiB(pid) {
  if (!pid) return 0;
  try {
    return processTree(pid).filter((r) => r.comm.includes("workerd")).reduce((sum, r) => sum + r.rss, 0);
  } catch {
    return 0;
  }
}

// ---- workload ----------------------------------------------------------------------------

/**
 * The API through the project's client. No retries: a 429 fails the bench (its customer's plan
 * is far above its rates), rather than being waited out inside a measured submission.
 */
const platform = (base, apiKey) => createRunplaneClient({ baseUrl: base, apiKey, retry: { maxRetries: 0 } });

/**
 * A POST to the bench worker's own routes (bench/worker.ts: the other variants), which are not
 * part of the API or its document: sent as the API's requests were before the client, with the
 * same headers, so that every variant's submission costs the same on this side.
 */
async function harness(base, route, body) {
  const res = await fetch(`${base}${route}`, {
    method: "POST",
    headers: { authorization: `Bearer ${ADMIN}`, "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`POST ${route} → ${res.status} ${text.slice(0, 300)}`);
  return text ? JSON.parse(text) : null;
}

async function benchCustomerKey(base) {
  const id = `bench-${Date.now().toString(36)}`;
  const created = await platform(base, ADMIN).POST("/v1/customers", {
    body: {
      id,
      name: "Benchmark",
      // The bench measures the step path, not admission: its customer's plan is far above the bench's rates.
      plan: { rateLimit: { requestsPerSecond: 100_000, burst: 1_000_000 }, maxRunsInFlight: 1_000_000 },
    },
  });
  return created.apiKey;
}

function runplaneBody(trial, steps, failRate) {
  return {
    projectId: trial,
    steps: Array.from({ length: steps }, (_, i) => ({
      name: `s${i}`,
      type: "synthetic",
      config: failRate > 0 ? { failRate, failKind: "transient" } : {},
      // Same policy as the Workflow's: up to 5 retries, 100 ms apart.
      retry: { maxAttempts: 6, initialDelayMs: 100, maxDelayMs: 100, backoffFactor: 1 },
    })),
  };
}

function progressBar(label, done, total, started) {
  if (!process.stdout.isTTY && done !== total && done % Math.max(1, Math.floor(total / 10)) !== 0) return;
  const width = 30;
  const filled = Math.round((done / total) * width);
  const secs = ((Date.now() - started) / 1000).toFixed(1);
  const line = `  ${label.padEnd(28)} [${"█".repeat(filled)}${"░".repeat(width - filled)}] ${String(done).padStart(5)}/${total}  ${secs}s`;
  if (process.stdout.isTTY) process.stdout.write(`\r${line}`);
  else console.log(line);
}

async function trial(ctx, variant, n, label) {
  const { base, opts, runplane, pid } = ctx;
  const trialId = `t-${variant}-${Date.now().toString(36)}`;
  await fetch(`${base}/bench/usage?reset=1`);
  const cpuBefore = treeCpuSeconds(pid);
  const submitMs = [];
  let next = 0;
  let peakKiB = runtimeRssKiB(pid);
  const sampler = setInterval(() => { peakKiB = Math.max(peakKiB, runtimeRssKiB(pid)); }, 250);
  const started = Date.now();
  let finished = 0;
  const poller = (async () => {
    while (finished < n) {
      await sleep(300);
      const { count } = await (await fetch(`${base}/bench/${variant}/results?trial=${trialId}&count=1`)).json();
      finished = count;
      progressBar(label, finished, n, started);
      if (Date.now() - started > Math.max(180_000, n * opts.steps * 40)) throw new Error(`${label}: only ${finished}/${n} runs finished before the timeout`);
    }
  })();
  const worker = async () => {
    while (next < n) {
      const i = next++;
      const t0 = performance.now();
      if (variant === "runplane") await runplane.POST("/v1/runs", { body: runplaneBody(trialId, opts.steps, opts.failRate) });
      else await harness(base, `/bench/${variant}/run`, { trial: trialId, id: `r${i}`, steps: opts.steps, failRate: opts.failRate });
      submitMs.push(performance.now() - t0);
    }
  };
  await Promise.all(Array.from({ length: opts.concurrency }, worker));
  await poller;
  const cpuAfter = treeCpuSeconds(pid);
  clearInterval(sampler);
  if (process.stdout.isTTY) process.stdout.write("\n");
  // Let trailing work (index writes, acks) land before counting operations.
  await sleep(opts.settleMs);
  const usage = await (await fetch(`${base}/bench/usage?reset=1`)).json();
  const { finished: rows } = await (await fetch(`${base}/bench/${variant}/results?trial=${trialId}`)).json();
  const latencies = rows.map(([c, f]) => f - c).sort((a, b) => a - b);
  const firstCreated = Math.min(...rows.map(([c]) => c));
  const lastFinished = Math.max(...rows.map(([, f]) => f));
  const seconds = (lastFinished - firstCreated) / 1000;
  const steps = n * opts.steps;
  submitMs.sort((a, b) => a - b);
  return {
    variant,
    runs: n,
    steps: opts.steps,
    failRate: opts.failRate,
    seconds,
    runsPerSec: n / seconds,
    stepsPerSec: steps / seconds,
    latencyMs: { p50: percentile(latencies, 50), p95: percentile(latencies, 95), p99: percentile(latencies, 99) },
    submitMs: { p50: percentile(submitMs, 50), p99: percentile(submitMs, 99) },
    peakRssMiB: peakKiB / 1024,
    rssAfterMiB: runtimeRssKiB(pid) / 1024,
    perStep: Object.fromEntries(Object.entries(usage).map(([k, v]) => [k, v / steps])),
    // CPU milliseconds per step spent by each process of the local runtime (workerd, wrangler).
    cpuMsPerStep: Object.fromEntries(
      Object.entries(cpuAfter).map(([name, sec]) => [name, ((sec - (cpuBefore[name] ?? 0)) * 1000) / steps]).filter(([, ms]) => ms > 0.01),
    ),
  };
}

// ---- report ------------------------------------------------------------------------------

const fmt = (x, d = 0) => (Number.isFinite(x) ? x.toFixed(d) : "–");

function summarize(results, variants) {
  const rows = [];
  for (const v of variants) {
    const rs = results.filter((r) => r.variant === v);
    if (!rs.length) continue;
    const m = (f) => median(rs.map(f));
    rows.push({
      variant: v,
      trials: rs.length,
      runsPerSec: m((r) => r.runsPerSec),
      stepsPerSec: m((r) => r.stepsPerSec),
      p50: m((r) => r.latencyMs.p50),
      p95: m((r) => r.latencyMs.p95),
      p99: m((r) => r.latencyMs.p99),
      submitP50: m((r) => r.submitMs.p50),
      submitP99: m((r) => r.submitMs.p99),
      peakRssMiB: Math.max(...rs.map((r) => r.peakRssMiB)),
      rssAfterMiB: rs.map((r) => r.rssAfterMiB),
      perStep: Object.fromEntries(Object.keys(rs[0].perStep).map((k) => [k, m((r) => r.perStep[k])])),
      runtimeCpuMsPerStep: m((r) => runtimeCpuMs(r)),
    });
  }
  return rows;
}

/**
 * CPU ms per step of the runtime's workerd processes. The local runtime is CPU-bound on one
 * thread, so steps/s is about 1000 ÷ this; it moves less with a busy neighbour than steps/s does,
 * which makes it the steadier figure for an A/B.
 */
const runtimeCpuMs = (trial) => Object.entries(trial.cpuMsPerStep ?? {}).filter(([name]) => name.includes("workerd")).reduce((sum, [, ms]) => sum + ms, 0);

function printTable(rows) {
  const header = ["variant", "steps/s", "runs/s", "run p50 ms", "p95", "p99", "submit p50", "p99", "runtime CPU ms/step", "peak MiB", "RSS after each trial"];
  console.log("\n" + header.join(" | "));
  for (const r of rows) {
    console.log([r.variant, fmt(r.stepsPerSec), fmt(r.runsPerSec, 1), fmt(r.p50), fmt(r.p95), fmt(r.p99), fmt(r.submitP50, 1), fmt(r.submitP99, 1), fmt(r.runtimeCpuMsPerStep, 2), fmt(r.peakRssMiB), r.rssAfterMiB.map((x) => fmt(x)).join("→")].join(" | "));
  }
  const meters = Object.keys(rows[0]?.perStep ?? {});
  console.log("\nbillable operations per step (counted by the platform)");
  console.log(["variant", ...meters].join(" | "));
  for (const r of rows) console.log([r.variant, ...meters.map((k) => fmt(r.perStep[k], 2))].join(" | "));
  const by = Object.fromEntries(rows.map((r) => [r.variant, r]));
  if (by.runplane) {
    console.log("\nratios (Runplane / other, medians)");
    for (const other of ["workflows", "object", "floor", "chain"]) {
      if (!by[other]) continue;
      console.log(`  vs ${other.padEnd(9)} throughput ×${fmt(by.runplane.stepsPerSec / by[other].stepsPerSec, 2)}   p95 latency ×${fmt(by.runplane.p95 / by[other].p95, 2)}`);
    }
  }
}

// ---- main --------------------------------------------------------------------------------

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const runtime = opts.url ? { base: opts.url, child: null, stop: () => {} } : await startRuntime(opts);
  const stop = () => { runtime.stop(); process.exit(130); };
  process.on("SIGINT", stop);
  process.on("SIGTERM", stop);
  try {
    const runplane = platform(runtime.base, await benchCustomerKey(runtime.base));
    const ctx = { base: runtime.base, opts, runplane, pid: runtime.child?.pid };
    console.log(`Runplane benchmark: ${opts.runs} runs × ${opts.steps} steps, submit concurrency ${opts.concurrency}, fail rate ${opts.failRate}, ${opts.rounds} rounds, variants ${opts.variants.join(" ")}`);
    // Warm every variant once (compilation, first D1/DO creation) before measuring.
    for (const v of opts.variants) await trial(ctx, v, Math.min(20, opts.runs), `warm-up ${v}`);
    const results = [];
    const plan = opts.sweep
      ? opts.sweep.flatMap((n) => opts.variants.map((v) => ({ v, n, round: 1 })))
      : Array.from({ length: opts.rounds }, (_, r) => opts.variants.map((v) => ({ v, n: opts.runs, round: r + 1 }))).flat();
    for (const { v, n, round } of plan) results.push({ ...(await trial(ctx, v, n, `${v} n=${n} round ${round}`)), round });
    let idle = null;
    if (opts.idleMs > 0) {
      // Memory once the platform has been idle: are objects and buffers released?
      await sleep(opts.idleMs);
      idle = { afterMs: opts.idleMs, rssMiB: runtimeRssKiB(runtime.child?.pid) / 1024 };
      console.log(`\nRSS after ${opts.idleMs / 1000} s idle: ${fmt(idle.rssMiB)} MiB`);
    }
    const file = opts.out ?? path.join(root, "bench-results", `bench-${new Date().toISOString().replace(/[:.]/g, "-")}.json`);
    mkdirSync(path.dirname(file), { recursive: true });
    if (opts.sweep) {
      for (const n of opts.sweep) {
        console.log(`\n=== n = ${n} ===`);
        printTable(summarize(results.filter((r) => r.runs === n), opts.variants));
      }
    } else printTable(summarize(results, opts.variants));
    writeFileSync(file, JSON.stringify({ options: opts, machine: { cpus: (await import("node:os")).cpus().length, node: process.version }, results, idle, summary: summarize(results, opts.variants) }, null, 2));
    console.log(`\nresults: ${path.relative(root, file)}`);
  } finally {
    runtime.stop();
  }
}

main().catch((err) => {
  console.error(`bench failed: ${err.message}`);
  process.exit(1);
});
