#!/usr/bin/env node
/**
 * npm run chaos — proves that no run, step result, dead letter, alert or nano-USD of cost is
 * lost or counted twice when things go wrong. A bounded load of runs with known token usage,
 * injected transient and permanent failures, slow steps and sleeps, duplicate submissions, for
 * two customers (one without a budget, one with a hard budget), and two SIGKILLs of the whole
 * local runtime — one while steps run, one while finished runs deliver their costs — each
 * followed by a restart on the same state. The platform runs with its default timers (lease,
 * redispatch, reconcile); the cron is fired once a minute, as Cloudflare would. Then it checks:
 *   - every run in flight at a kill ended within 60 s of the restart;
 *   - every run is accounted for: succeeded, or failed with exactly one open DLQ entry (or, for
 *     the budgeted customer, stopped with budget_exceeded), and one alert per DLQ entry;
 *   - no step ran again after its success was recorded; duplicate submissions made no run;
 *   - money: every run's AI cost equals its priced usage (tokens of its succeeded steps × the
 *     model's price) to the nano-USD, every run's cost is settled; each customer's ledger
 *     month-to-date equals the sum of its runs' costs and equals the D1 report total; the
 *     ledger's reconciliation with D1 finds no difference; the budgeted customer never passes
 *     its limit and holds nothing once done.
 * Exits 1 on any violation, printing the differences. Loopback only; bounded in count and time.
 *
 *   npm run chaos -- --runs 240 --steps 3 --timeout 900 --seed 42
 */
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { createRunplaneClient, RunplaneError } from "../clients/typescript/src/index.ts";
import { ROOT as root } from "./lib/root.mjs";
import { applyLocalMigrations, ramDisk, signalGroup, spawnDev, waitForHealth } from "./lib/runtime.mjs";

const ADMIN = "chaos-admin-key";
const TERMINAL = new Set(["succeeded", "failed", "cancelled"]);
const MODEL = "gpt-4o-mini";
/** The budgeted customer's hard limit: enough for most of its runs, not for all of them. */
const BUDGET_USD = "0.05";
/** Runs that end together just before the second kill, so that it lands while costs are delivered. */
const WAVE = 120;

function parseArgs(argv) {
  const opts = { runs: 240, steps: 3, firstKillAt: 0.3, secondKillAt: 0.65, timeoutS: 900, port: 8790, concurrency: 8, seed: Date.now() };
  for (let i = 0; i < argv.length; i++) {
    const [flag, inline] = argv[i].split("=");
    const value = () => Number(inline ?? argv[++i]);
    if (flag === "--runs") opts.runs = value();
    else if (flag === "--steps") opts.steps = value();
    else if (flag === "--first-kill-at") opts.firstKillAt = value();
    else if (flag === "--second-kill-at") opts.secondKillAt = value();
    else if (flag === "--timeout") opts.timeoutS = value();
    else if (flag === "--port") opts.port = value();
    else if (flag === "--seed") opts.seed = value();
    else {
      console.error(`unknown flag ${flag}`);
      process.exit(2);
    }
  }
  return opts;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** wrangler dev fires no cron by itself: once a minute, as Cloudflare does, the script fires it. */
let lastCron = 0;
async function cronTick(base) {
  if (Date.now() - lastCron < 60_000) return;
  lastCron = Date.now();
  try {
    await fetch(`${base}/cdn-cgi/local/scheduled`, { signal: AbortSignal.timeout(30_000) });
  } catch {}
}

/** A small deterministic PRNG, so a failing chaos run can be replayed with --seed. */
function prng(seed) {
  let s = seed >>> 0 || 1;
  return () => ((s = (s * 1664525 + 1013904223) >>> 0) / 2 ** 32);
}

class Runtime {
  constructor(opts, persist) {
    this.opts = opts;
    this.persist = persist;
    this.base = `http://127.0.0.1:${opts.port}`;
    this.child = null;
    this.starts = 0;
  }

  async start() {
    if (this.starts === 0) applyLocalMigrations({ persist: this.persist });
    // The platform's own timers stay at their defaults (wrangler.toml): only what a local run
    // needs differs — the admin key, development mode, no webhook, quieter logs.
    const vars = { ADMIN_API_KEY: ADMIN, RUNPLANE_ENV: "development", LOG_LEVEL: "warn", ALERT_WEBHOOK_URL: "" };
    const logFile = path.join(root, ".wrangler", `chaos-dev-${this.starts}.log`);
    this.child = spawnDev({ port: this.opts.port, persist: this.persist, vars, logFile });
    this.starts += 1;
    const health = await waitForHealth(this.base, this.child);
    if (health.exited) throw new Error(`wrangler dev exited with ${this.child.exitCode}`);
    if (!health.up) throw new Error("runtime did not come up within 60 s");
  }

  /** SIGKILL to wrangler and workerd alike: nothing gets to flush or clean up. */
  kill() {
    signalGroup(this.child, "SIGKILL");
  }

  stop() {
    signalGroup(this.child, "SIGTERM");
  }
}

/** The API through the project's client; a request that does not answer in 30 s is given up. */
const platform = (base, apiKey) => createRunplaneClient({ baseUrl: base, apiKey, timeoutMs: 30_000 });

/**
 * `attempt()` again until the runtime answers (it may be down between a kill and its restart, or
 * answer 5xx while it comes back). A 4xx is the API's considered answer: thrown at once.
 */
async function callUp(attempt, deadline) {
  for (;;) {
    try {
      return await attempt();
    } catch (err) {
      const considered = err instanceof RunplaneError && err.status < 500 && err.code !== "unexpected_response";
      if (considered || Date.now() > deadline) throw err;
      await sleep(500);
    }
  }
}

/** Every element of a paged list (the client follows nextCursor). */
async function all(items) {
  const found = [];
  for await (const item of items) found.push(item);
  return found;
}

function workload(opts, random, customers) {
  return Array.from({ length: opts.runs }, (_, i) => {
    const customer = customers[i % customers.length];
    const permanentAt = random() < 0.1 ? Math.floor(random() * opts.steps) : -1;
    const sleepAt = random() < 0.1 ? Math.floor(random() * opts.steps) : -1;
    const steps = Array.from({ length: opts.steps }, (_, s) => {
      if (s === sleepAt && s !== permanentAt) return { name: `s${s}`, type: "sleep", config: { durationMs: 1000 } };
      // Known token usage on every working step: the run's AI cost must equal it, priced.
      const usage = { model: MODEL, inputTokens: 1000 + Math.floor(random() * 9000), cachedTokens: Math.floor(random() * 500), outputTokens: 100 + Math.floor(random() * 900) };
      const config = { durationMs: Math.floor(random() * 300), usage };
      // Every attempt fails: a crashed attempt (worker_error) must not let the run slip through.
      if (s === permanentAt) Object.assign(config, { failTimes: 99, failKind: "permanent" });
      else Object.assign(config, { failRate: 0.15, failKind: "transient" });
      return { name: `s${s}`, type: "synthetic", config, timeoutMs: 60_000, retry: { maxAttempts: 6, initialDelayMs: 100, maxDelayMs: 1000, backoffFactor: 2 } };
    });
    return { customer, body: { idempotencyKey: `chaos-${opts.seed}-${i}`, projectId: "chaos", steps }, expectPermanent: permanentAt >= 0 };
  });
}

/** quantity × price per million, rounded half to even: the platform's own rule, in BigInt. */
function costNano(quantity, perMillion) {
  const n = BigInt(quantity) * BigInt(perMillion);
  const q = n / 1_000_000n;
  const r = n % 1_000_000n;
  return 2n * r > 1_000_000n || (2n * r === 1_000_000n && q % 2n === 1n) ? q + 1n : q;
}

/** The AI cost a run must have: each succeeded step's usage, once, at the model's price. */
function pricedUsage(spec, run, price) {
  let nano = 0n;
  for (const [i, step] of run.steps.entries()) {
    const usage = spec.body.steps[i].config?.usage;
    if (step.status !== "succeeded" || !usage) continue;
    nano += costNano(usage.inputTokens, price.input) + costNano(usage.cachedTokens, price.cached) + costNano(usage.outputTokens, price.output);
  }
  return nano;
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const began = Date.now();
  const deadline = began + opts.timeoutS * 1000;
  const random = prng(opts.seed);
  mkdirSync(path.join(root, ".wrangler"), { recursive: true });
  const persist = mkdtempSync(path.join(ramDisk() ?? tmpdir(), "runplane-chaos-"));
  const runtime = new Runtime(opts, persist);
  const onSignal = () => {
    runtime.stop();
    rmSync(persist, { recursive: true, force: true });
    process.exit(130);
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  const violations = [];
  const kills = [];
  try {
    console.log(`chaos: ${opts.runs} runs × ${opts.steps} steps for 2 customers (one with a ${BUDGET_USD} USD hard budget), default timers, seed ${opts.seed}`);
    await runtime.start();
    // The runtime keeps its port across restarts: one client per key serves the whole run.
    const admin = platform(runtime.base, ADMIN);
    const tag = opts.seed.toString(36);
    const customers = [];
    for (const [id, budget] of [[`chaos-${tag}-open`, undefined], [`chaos-${tag}-capped`, { monthlyLimitUsd: BUDGET_USD, softThresholds: [0.5] }]]) {
      const created = await admin.POST("/v1/customers", {
        body: {
          id,
          name: id,
          // Faults are the subject, not admission: the plan is far above the workload's rates.
          plan: { rateLimit: { requestsPerSecond: 100_000, burst: 1_000_000 }, maxRunsInFlight: 1_000_000 },
          ...(budget ? { budget } : {}),
        },
      });
      customers.push({ id, runplane: platform(runtime.base, created.apiKey), budgeted: budget !== undefined });
    }
    const pricing = (await admin.GET("/v1/pricing")).inForce.models.find((m) => m.model === MODEL);
    const price = { input: pricing.inputNanoUsdPerMTok, cached: pricing.cachedInputNanoUsdPerMTok ?? pricing.inputNanoUsdPerMTok, output: pricing.outputNanoUsdPerMTok };

    const runs = workload(opts, random, customers);
    const ids = new Array(runs.length).fill(null);
    const refused = new Set();
    let next = 0;
    let submitted = 0;
    let watched = null; // a run in flight at the first kill: its cost before and after
    const submitOne = async (i) => {
      const { customer, body } = runs[i];
      for (;;) {
        if (Date.now() > deadline) throw new Error("timed out submitting");
        try {
          return (await customer.runplane.POST("/v1/runs", { body })).run.id;
        } catch (err) {
          if (err instanceof RunplaneError && err.status === 402 && customer.budgeted) return null; // the budget is spent: refused, as it should be
          // The runtime is down (killed), or answered otherwise: the idempotency key makes the retry safe.
          await sleep(500);
        }
      }
    };
    const killAndRestart = async (phase, evidence) => {
      console.log(`  ${submitted} submitted: SIGKILL the local runtime (${phase}${evidence ? `; ${evidence}` : ""})`);
      const kill = { phase, submitted, evidence, runs: new Set(ids.filter(Boolean)), killedAt: Date.now(), restartedAt: 0 };
      kills.push(kill);
      runtime.kill();
      await sleep(1500);
      await runtime.start();
      kill.restartedAt = Date.now();
      console.log("  runtime restarted on the same state");
    };
    const firstKill = Math.floor(opts.runs * opts.firstKillAt);
    const secondKill = Math.floor(opts.runs * opts.secondKillAt);
    let paused = null; // while a kill is prepared, submitters wait
    const worker = async () => {
      while (next < runs.length) {
        while (paused) await paused;
        const i = next++;
        if (ids[i] !== null) continue; // submitted by the director (the wave)
        ids[i] = await submitOne(i);
        if (ids[i] === null) refused.add(i);
        submitted += 1;
      }
    };
    /** Fires the two kills at their moments, pausing new submissions meanwhile (work already submitted goes on). */
    const director = async () => {
      const pauseUntilDone = async (work) => {
        let resume;
        paused = new Promise((r) => (resume = r));
        try {
          await work();
        } finally {
          paused = null;
          resume();
        }
      };
      while (submitted < firstKill) await sleep(50);
      await pauseUntilDone(async () => {
        // Mid-step: runs are being worked on right now. Follow one of them across the kill.
        const candidate = ids.filter(Boolean).at(-1);
        const customer = runs[ids.indexOf(candidate)].customer;
        const path = { params: { path: { id: candidate } } };
        const before = await customer.runplane.GET("/v1/runs/{id}/cost", path);
        const { run: state } = await customer.runplane.GET("/v1/runs/{id}", path);
        watched = { id: candidate, customer, before, statusBefore: state.status, stepsBefore: state.steps.map((s) => `${s.name}:${s.status}`).join(" ") };
        await killAndRestart("mid-step", `${watched.id} ${watched.statusBefore}: ${watched.stepsBefore}`);
      });
      while (submitted < secondKill) await sleep(50);
      await pauseUntilDone(async () => {
        // During cost delivery: a wave of runs that sleep together and end together, so that
        // many deliver their costs at the same moment; the kill comes as the first one ends.
        const open = customers.find((c) => !c.budgeted);
        const wave = Array.from({ length: WAVE }, (_, w) => {
          const usage = () => ({ model: MODEL, inputTokens: 2000 + Math.floor(random() * 2000), cachedTokens: 0, outputTokens: 200 + Math.floor(random() * 200) });
          return {
            customer: open,
            body: {
              idempotencyKey: `chaos-${opts.seed}-wave-${w}`,
              projectId: "chaos",
              steps: [
                { name: "w0", type: "synthetic", config: { usage: usage() } },
                { name: "nap", type: "sleep", config: { durationMs: 8000 } },
                { name: "w1", type: "synthetic", config: { usage: usage() } },
              ],
            },
            expectPermanent: false,
          };
        });
        const first = runs.length;
        runs.push(...wave);
        ids.push(...wave.map(() => null));
        const waveStart = Date.now();
        await Promise.all(wave.map(async (_, w) => (ids[first + w] = await submitOne(first + w))));
        submitted += wave.length;
        const waveIds = ids.slice(first);
        // The wave sleeps 8 s and then ends, each run at its own wake time. The local runtime serves
        // HTTP on the thread that runs the wave, so the kill is timed from the wake times (read
        // while the wave sleeps), not by polling: it lands in the middle of the wave's end.
        const wakes = [];
        for (const id of waveIds) {
          const { events } = await open.runplane.GET("/v1/runs/{id}/events", { params: { path: { id } } });
          const waiting = events.find((e) => e.type === "step.waiting");
          if (waiting?.data?.wakeAt) wakes.push(Date.parse(waiting.data.wakeAt));
        }
        wakes.sort((a, b) => a - b);
        const middle = wakes[Math.floor(wakes.length / 2)] ?? Date.now();
        await sleep(Math.max(0, middle - Date.now()));
        const killedAt = Date.now();
        await killAndRestart("during cost delivery", null);
        // Right after the restart, before any alarm: the wave runs that had ended just before the
        // kill, and those whose cost was not yet counted by the ledger (their delivery was cut off).
        let endedJustBefore = 0;
        let unsettled = 0;
        let ended = 0;
        for (const id of waveIds) {
          const { run } = await open.runplane.GET("/v1/runs/{id}", { params: { path: { id } } });
          if (!TERMINAL.has(run.status)) continue;
          ended += 1;
          const finished = Date.parse(run.finishedAt);
          if (finished <= killedAt && finished > killedAt - 250) endedJustBefore += 1;
          if (!run.cost.settled) unsettled += 1;
        }
        kills[kills.length - 1].evidence = `of ${WAVE} runs ending together, ${ended} had ended, ${endedJustBefore} in the 250 ms before the kill; ${unsettled} with cost not yet counted by the ledger when the runtime came back`;
      });
    };
    await Promise.all([director(), ...Array.from({ length: opts.concurrency }, worker)]);


    // Duplicate submissions after the fact: each must return the run it already made.
    for (let i = 0; i < runs.length; i += 10) {
      if (refused.has(i)) continue;
      const { customer, body } = runs[i];
      // The raw call: the status (200, the run it made; not 202, a new one) is the point.
      const { data, response } = await callUp(() => customer.runplane.api.POST("/v1/runs", { body }), deadline);
      if (response.status !== 200 || data?.run.id !== ids[i]) violations.push(`duplicate submission of run #${i} answered ${response.status} with ${data?.run?.id ?? "no run"} (expected 200 and ${ids[i]})`);
    }
    const accepted = ids.map((id, i) => ({ id, i })).filter((r) => r.id !== null);
    console.log(`  all ${runs.length} runs submitted (${refused.size} refused with 402 by the budget); waiting for them to finish`);

    const finals = new Map();
    for (;;) {
      for (const { id, i } of accepted.filter((r) => !finals.has(r.id))) {
        const { run } = await callUp(() => runs[i].customer.runplane.GET("/v1/runs/{id}", { params: { path: { id } } }), deadline);
        if (TERMINAL.has(run.status)) finals.set(id, run);
      }
      process.stdout.write(`\r  finished ${finals.size}/${accepted.length}   `);
      await cronTick(runtime.base);
      if (finals.size === accepted.length) break;
      if (Date.now() > deadline) {
        violations.push(`${accepted.length - finals.size} runs not finished within ${opts.timeoutS} s: ${accepted.filter((r) => !finals.has(r.id)).slice(0, 5).map((r) => r.id).join(", ")}…`);
        break;
      }
      await sleep(2000);
    }
    process.stdout.write("\n");

    // Dead letters and alerts land through the queues after the run fails; one lost with the
    // killed runtime is sent again by the reconciler. Wait for them, within the deadline.
    const isDeadLettered = (run) => run.status === "failed" && run.failure?.type !== "budget_exceeded";
    const deadLettered = [...finals.values()].filter(isDeadLettered).length;
    let entries = [];
    let alerts = [];
    for (;;) {
      entries = [];
      for (const customer of customers) {
        entries.push(...(await callUp(() => all(admin.items("/v1/dlq", { params: { query: { customerId: customer.id, limit: 500 } } })), deadline)));
      }
      const ours = new Set(customers.map((c) => c.id));
      alerts = (await callUp(() => admin.GET("/v1/alerts", { params: { query: { kind: "dlq_entry", limit: 500 } } }), deadline)).alerts.filter((a) => ours.has(a.customerId));
      if ((entries.length >= deadLettered && alerts.length >= entries.length) || Date.now() > deadline) break;
      await cronTick(runtime.base);
      await sleep(2000);
    }

    const byRun = new Map();
    for (const e of entries) byRun.set(e.runId, [...(byRun.get(e.runId) ?? []), e]);
    let succeeded = 0;
    let failed = 0;
    let stoppedByBudget = 0;
    let retried = 0;
    for (const { id, i } of accepted) {
      const run = finals.get(id);
      if (!run) continue;
      const dead = byRun.get(id) ?? [];
      if (run.status === "succeeded") {
        succeeded += 1;
        if (dead.length) violations.push(`run ${id} succeeded but has ${dead.length} DLQ entries`);
      } else if (run.status === "failed" && run.failure?.type === "budget_exceeded") {
        stoppedByBudget += 1;
        if (!runs[i].customer.budgeted) violations.push(`run ${id} of a customer without a budget failed budget_exceeded`);
        if (dead.length) violations.push(`run ${id} stopped by its budget but has ${dead.length} DLQ entries`);
      } else if (run.status === "failed") {
        failed += 1;
        if (dead.length !== 1) violations.push(`run ${id} failed (${run.failure?.type} at ${run.failure?.step}) with ${dead.length} DLQ entries, expected 1`);
      } else violations.push(`run ${id} ended ${run.status}`);
      if (runs[i].expectPermanent && run.status === "succeeded") violations.push(`run ${id} had a permanent failure but succeeded`);
      retried += run.steps.reduce((n, s) => n + Math.max(0, s.attempts - 1), 0);

      const events = await callUp(() => all(runs[i].customer.runplane.items("/v1/runs/{id}/events", { params: { path: { id } } })), deadline);
      const succeededAt = new Map();
      for (const e of events) {
        if (e.type === "step.succeeded") succeededAt.set(e.step, e.seq);
        if (e.type === "step.started" && succeededAt.has(e.step)) violations.push(`run ${id}: step ${e.step} started again (event ${e.seq}) after its success was recorded (event ${succeededAt.get(e.step)})`);
      }
    }
    const entryIds = new Set(entries.map((e) => e.id));
    if (entryIds.size !== entries.length) violations.push(`duplicate DLQ entry ids: ${entries.length - entryIds.size}`);
    const alertedEntries = new Set(alerts.map((a) => a.dlqId));
    if (alerts.length !== entries.length) violations.push(`${alerts.length} alerts for ${entries.length} DLQ entries`);
    for (const e of entries) if (!alertedEntries.has(e.id)) violations.push(`DLQ entry ${e.id} has no alert`);

    // ---- money ----------------------------------------------------------------------------
    // Every run's cost settles (counted by its ledger); its AI part equals its priced usage.
    const costs = new Map();
    for (;;) {
      for (const { id, i } of accepted.filter((r) => !costs.has(r.id))) {
        const cost = await callUp(() => runs[i].customer.runplane.GET("/v1/runs/{id}/cost", { params: { path: { id } } }), deadline);
        if (cost.settled) costs.set(id, cost);
      }
      if (costs.size === accepted.length || Date.now() > deadline) break;
      await cronTick(runtime.base);
      await sleep(2000);
    }
    if (costs.size !== accepted.length) violations.push(`${accepted.length - costs.size} runs' costs never settled: ${accepted.filter((r) => !costs.has(r.id)).slice(0, 5).map((r) => r.id).join(", ")}`);
    const money = [];
    for (const customer of customers) {
      let sumOfRuns = 0n;
      for (const { id, i } of accepted.filter((r) => runs[r.i].customer === customer)) {
        const cost = costs.get(id);
        if (!cost) continue;
        sumOfRuns += BigInt(cost.totalNanoUsd);
        const expectedAi = pricedUsage(runs[i], finals.get(id), price);
        if (BigInt(cost.aiNanoUsd) !== expectedAi) violations.push(`run ${id}: AI cost ${cost.aiNanoUsd} nano-USD, priced usage ${expectedAi} (difference ${BigInt(cost.aiNanoUsd) - expectedAi})`);
        if (BigInt(cost.aiNanoUsd) + BigInt(cost.infraNanoUsd) !== BigInt(cost.totalNanoUsd)) violations.push(`run ${id}: AI + infrastructure ≠ total`);
      }
      // The ledger and D1 agree once D1 has caught up (its writes go through the events queue).
      let ledger;
      let report;
      let reconciliation;
      for (;;) {
        const path = { params: { path: { id: customer.id } } };
        ledger = (await callUp(() => admin.GET("/v1/customers/{id}", path), deadline)).customer.spend;
        report = await callUp(() => admin.GET("/v1/costs", { params: { query: { customerId: customer.id } } }), deadline);
        reconciliation = (await callUp(() => admin.GET("/v1/customers/{id}/ledger", path), deadline)).ledger.reconciliation;
        const agree = BigInt(ledger.monthToDateNanoUsd) === sumOfRuns && BigInt(report.totalNanoUsd) === sumOfRuns && BigInt(reconciliation.differenceNanoUsd) === 0n;
        if ((agree && BigInt(ledger.heldNanoUsd) === 0n) || Date.now() > deadline) break;
        await cronTick(runtime.base);
        await sleep(3000);
      }
      const ledgerNano = BigInt(ledger.monthToDateNanoUsd);
      const d1Nano = BigInt(report.totalNanoUsd);
      money.push({ customer: customer.id, runs: sumOfRuns, ledger: ledgerNano, d1: d1Nano, held: BigInt(ledger.heldNanoUsd), reconciliation });
      if (ledgerNano !== sumOfRuns) violations.push(`${customer.id}: ledger month-to-date ${ledgerNano} ≠ sum of its runs' costs ${sumOfRuns} (difference ${ledgerNano - sumOfRuns})`);
      if (d1Nano !== ledgerNano) violations.push(`${customer.id}: D1 report total ${d1Nano} ≠ ledger ${ledgerNano} (difference ${d1Nano - ledgerNano})`);
      if (BigInt(reconciliation.differenceNanoUsd) !== 0n || reconciliation.unexplained.length > 0) violations.push(`${customer.id}: reconciliation difference ${reconciliation.differenceNanoUsd}, unexplained ${JSON.stringify(reconciliation.unexplained).slice(0, 300)}`);
      if (BigInt(ledger.heldNanoUsd) !== 0n) violations.push(`${customer.id}: ${ledger.heldNanoUsd} nano-USD still held after every run ended`);
      if (customer.budgeted && ledgerNano > BigInt(Math.round(Number(BUDGET_USD) * 1e9))) violations.push(`${customer.id}: spend ${ledgerNano} passed the ${BUDGET_USD} USD limit`);
    }

    // Recovery: every run that was in flight at a kill ends within 60 s of the restart.
    const RECOVERY_MS = 60_000;
    const recovery = kills.map(() => ({ runs: 0, worstMs: 0 }));
    for (const { id } of accepted) {
      const run = finals.get(id);
      if (!run?.finishedAt) continue;
      const finishedAt = Date.parse(run.finishedAt);
      const k = kills.map((kill, index) => ({ kill, index })).filter(({ kill }) => kill.runs.has(id) && finishedAt > kill.killedAt).at(-1);
      if (!k) continue;
      const ms = finishedAt - k.kill.restartedAt;
      recovery[k.index].runs += 1;
      recovery[k.index].worstMs = Math.max(recovery[k.index].worstMs, ms);
      if (ms > RECOVERY_MS) violations.push(`run ${id} was in flight at the ${k.kill.phase} kill and ended ${(ms / 1000).toFixed(1)} s after the restart (more than 60 s)`);
    }

    console.log("\nchaos summary");
    console.log(`  runs            ${runs.length} submitted, ${accepted.length} accepted, ${refused.size} refused (402) — succeeded ${succeeded}, failed ${failed}, stopped by budget ${stoppedByBudget}`);
    console.log(`  retried attempts ${retried}`);
    console.log(`  DLQ entries     ${entries.length} (one per failed run: ${failed === entries.length ? "yes" : "no"})`);
    console.log(`  alerts          ${alerts.length}`);
    console.log(`  runtime starts  ${runtime.starts} (SIGKILL: ${kills.map((k) => `${k.phase} after ${k.submitted} submitted`).join("; ")})`);
    for (const k of kills) if (k.evidence) console.log(`                  ${k.phase}: ${k.evidence}`);
    kills.forEach((k, i) => console.log(`  recovery        ${k.phase}: ${recovery[i].runs} runs in flight at the kill, the last ended ${(Math.max(0, recovery[i].worstMs) / 1000).toFixed(1)} s after the restart (bound 60 s)`));
    console.log("  money (nano-USD)  customer: Σ runs | ledger | D1 report | held | reconciliation difference");
    for (const m of money) console.log(`    ${m.customer}: ${m.runs} | ${m.ledger} | ${m.d1} | ${m.held} | ${m.reconciliation.differenceNanoUsd} (${m.reconciliation.runsCompared} runs compared, ${m.reconciliation.repaired.length} repaired)`);
    if (watched) {
      const after = costs.get(watched.id) ?? (await callUp(() => watched.customer.runplane.GET("/v1/runs/{id}/cost", { params: { path: { id: watched.id } } }), deadline));
      const line = (c) => `total ${c.totalNanoUsd} = AI ${c.aiNanoUsd} + infra ${c.infraNanoUsd}; settled ${c.settled}; ${c.lines.map((l) => `${l.meter}${l.model ? `/${l.model}` : ""} ${l.quantity}→${l.nanoUsd}`).join(", ")}`;
      console.log(`  one run across the first kill: ${watched.id} (${watched.stepsBefore} when killed)`);
      console.log(`    before: ${line(watched.before)}`);
      console.log(`    after:  ${line(after)} (${finals.get(watched.id)?.status})`);
    }
    console.log(`  elapsed         ${((Date.now() - began) / 1000).toFixed(0)} s`);
    console.log(`  violations      ${violations.length}`);
    for (const v of violations.slice(0, 30)) console.log(`    - ${v}`);
  } finally {
    runtime.stop();
    await sleep(500);
    rmSync(persist, { recursive: true, force: true });
  }
  process.exit(violations.length === 0 ? 0 : 1);
}

main().catch((err) => {
  console.error(`chaos failed: ${err.stack ?? err}`);
  process.exit(1);
});
