#!/usr/bin/env node
/**
 * npm run chaos — proves that no run, step result or dead letter is lost or double counted
 * when things go wrong: a bounded load of runs with injected transient and permanent
 * failures, slow steps and sleeps, duplicate submissions, and a SIGKILL of the whole local
 * runtime in the middle, which is then started again on the same state. Then it checks:
 *   - every run is accounted for: succeeded, or failed with exactly one open DLQ entry;
 *   - no step ran again after its success was recorded;
 *   - no duplicate DLQ entries, and one alert per DLQ entry;
 *   - a duplicate submission (same idempotency key) never made a second run.
 * Exits non-zero on any violation. Loopback only; bounded in count and time.
 *
 *   npm run chaos -- --runs 300 --steps 4 --kill-at 0.4 --timeout 300
 */
import { execFileSync, spawn } from "node:child_process";
import { createWriteStream, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const ADMIN = "chaos-admin-key";
const TERMINAL = new Set(["succeeded", "failed", "cancelled"]);

function parseArgs(argv) {
  const opts = { runs: 300, steps: 4, killAt: 0.4, timeoutS: 300, port: 8790, concurrency: 8, seed: Date.now() };
  for (let i = 0; i < argv.length; i++) {
    const [flag, inline] = argv[i].split("=");
    const value = () => Number(inline ?? argv[++i]);
    if (flag === "--runs") opts.runs = value();
    else if (flag === "--steps") opts.steps = value();
    else if (flag === "--kill-at") opts.killAt = value();
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

/**
 * wrangler dev does not fire cron triggers on its own: the platform's once-a-minute
 * reconciler is triggered here the way Cloudflare would, every few seconds while waiting.
 */
let lastCron = 0;
async function cronTick(base) {
  if (Date.now() - lastCron < 5000) return;
  lastCron = Date.now();
  try {
    await fetch(`${base}/cdn-cgi/local/scheduled`, { signal: AbortSignal.timeout(10_000) });
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
    const env = { ...process.env, WRANGLER_SEND_METRICS: "false", CI: "true" };
    if (this.starts === 0) {
      execFileSync("wrangler", ["d1", "migrations", "apply", "DB", "--local", "--persist-to", this.persist], { cwd: root, env, stdio: ["ignore", "ignore", "inherit"] });
    }
    const vars = {
      ADMIN_API_KEY: ADMIN,
      RUNPLANE_ENV: "development",
      // Short enough that the checks finish in minutes: a crashed attempt is noticed in 3 s,
      // and a dispatch lost with the killed runtime's in-memory queue is sent again in 10 s.
      LEASE_MS: "3000",
      REDISPATCH_MS: "10000",
      RECONCILE_AFTER_MS: "10000",
      LOG_LEVEL: "warn",
      ALERT_WEBHOOK_URL: "",
    };
    const args = ["dev", "--local", "--port", String(this.opts.port), "--persist-to", this.persist, "--log-level", "warn"];
    for (const [k, v] of Object.entries(vars)) args.push("--var", `${k}:${v}`);
    this.child = spawn("wrangler", args, { cwd: root, env, stdio: ["ignore", "pipe", "pipe"], detached: true });
    const log = createWriteStream(path.join(root, ".wrangler", `chaos-dev-${this.starts}.log`));
    this.child.stdout.pipe(log);
    this.child.stderr.pipe(log);
    this.starts += 1;
    for (let i = 0; i < 240; i++) {
      if (this.child.exitCode !== null) throw new Error(`wrangler dev exited with ${this.child.exitCode}`);
      try {
        if ((await fetch(`${this.base}/health`)).ok) return;
      } catch {}
      await sleep(250);
    }
    throw new Error("runtime did not come up within 60 s");
  }

  /** SIGKILL to wrangler and workerd alike: nothing gets to flush or clean up. */
  kill() {
    try {
      process.kill(-this.child.pid, "SIGKILL");
    } catch {}
  }

  stop() {
    try {
      process.kill(-this.child.pid, "SIGTERM");
    } catch {}
  }
}

async function call(base, method, route, body, key = ADMIN) {
  const res = await fetch(`${base}${route}`, {
    method,
    headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(15_000),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}

function workload(opts, random) {
  return Array.from({ length: opts.runs }, (_, i) => {
    const permanentAt = random() < 0.1 ? Math.floor(random() * opts.steps) : -1;
    const sleepAt = random() < 0.1 ? Math.floor(random() * opts.steps) : -1;
    const steps = Array.from({ length: opts.steps }, (_, s) => {
      if (s === sleepAt && s !== permanentAt) return { name: `s${s}`, type: "sleep", config: { durationMs: 1000 } };
      const config = { durationMs: Math.floor(random() * 300) };
      // Every attempt fails: a crashed attempt (worker_error) must not let the run slip through.
      if (s === permanentAt) Object.assign(config, { failTimes: 99, failKind: "permanent" });
      else Object.assign(config, { failRate: 0.15, failKind: "transient" });
      return { name: `s${s}`, type: "synthetic", config, retry: { maxAttempts: 6, initialDelayMs: 100, maxDelayMs: 1000, backoffFactor: 2 } };
    });
    return { idempotencyKey: `chaos-${opts.seed}-${i}`, projectId: "chaos", steps, expectPermanent: permanentAt >= 0 };
  });
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const began = Date.now();
  const deadline = began + opts.timeoutS * 1000;
  const random = prng(opts.seed);
  mkdirSync(path.join(root, ".wrangler"), { recursive: true });
  const persist = mkdtempSync(path.join(existsShm() ? "/dev/shm" : tmpdir(), "runplane-chaos-"));
  const runtime = new Runtime(opts, persist);
  const onSignal = () => {
    runtime.stop();
    rmSync(persist, { recursive: true, force: true });
    process.exit(130);
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  const violations = [];
  try {
    console.log(`chaos: ${opts.runs} runs × ${opts.steps} steps, SIGKILL after ${Math.round(opts.killAt * 100)}% submitted, seed ${opts.seed}`);
    await runtime.start();
    const customerId = `chaos-${opts.seed.toString(36)}`;
    const created = await call(runtime.base, "POST", "/v1/customers", { id: customerId, name: "Chaos" });
    if (created.status !== 201) throw new Error(`customer: ${created.status} ${JSON.stringify(created.body)}`);
    const key = created.body.apiKey;

    const runs = workload(opts, random);
    const ids = new Array(runs.length).fill(null);
    let next = 0;
    let killed = false;
    let submitted = 0;
    const killAt = Math.floor(opts.runs * opts.killAt);
    const submitOne = async (i) => {
      const { expectPermanent, ...body } = runs[i];
      for (;;) {
        if (Date.now() > deadline) throw new Error("timed out submitting");
        try {
          const res = await call(runtime.base, "POST", "/v1/runs", body, key);
          if (res.status === 202 || res.status === 200) return res.body.run.id;
          throw new Error(`POST /v1/runs → ${res.status} ${JSON.stringify(res.body)}`);
        } catch (err) {
          // The runtime is down (killed): the idempotency key makes the retry safe.
          await sleep(500);
        }
      }
    };
    const worker = async () => {
      while (next < runs.length) {
        const i = next++;
        ids[i] = await submitOne(i);
        submitted += 1;
        if (!killed && submitted >= killAt) {
          killed = true;
          console.log(`  ${submitted} submitted: SIGKILL the local runtime`);
          runtime.kill();
          await sleep(1500);
          await runtime.start();
          console.log("  runtime restarted on the same state");
        }
      }
    };
    await Promise.all(Array.from({ length: opts.concurrency }, worker));

    // Duplicate submissions after the fact: each must return the run it already made.
    for (let i = 0; i < runs.length; i += 10) {
      const { expectPermanent, ...body } = runs[i];
      const res = await call(runtime.base, "POST", "/v1/runs", body, key);
      if (res.status !== 200 || res.body.run.id !== ids[i]) violations.push(`duplicate submission of run #${i} answered ${res.status} with ${res.body?.run?.id ?? "no run"} (expected 200 and ${ids[i]})`);
    }
    console.log(`  all ${runs.length} runs submitted; waiting for them to finish`);

    let finals = new Map();
    for (;;) {
      const pending = ids.filter((id) => !finals.has(id));
      for (const id of pending) {
        const res = await call(runtime.base, "GET", `/v1/runs/${id}`, undefined, key);
        if (res.status === 200 && TERMINAL.has(res.body.run.status)) finals.set(id, res.body.run);
      }
      process.stdout.write(`\r  finished ${finals.size}/${ids.length}   `);
      await cronTick(runtime.base);
      if (finals.size === ids.length) break;
      if (Date.now() > deadline) {
        violations.push(`${ids.length - finals.size} runs not finished within ${opts.timeoutS} s: ${ids.filter((id) => !finals.has(id)).slice(0, 5).join(", ")}…`);
        break;
      }
      await sleep(2000);
    }
    process.stdout.write("\n");

    // Dead letters and alerts land through the queues after the run fails; one lost with the
    // killed runtime is sent again by the reconciler. Wait for them, within the deadline.
    const failedRuns = [...finals.values()].filter((r) => r.status === "failed").length;
    let entries = [];
    let alerts = [];
    for (;;) {
      entries = [];
      for (let cursor = null; ;) {
        const res = await call(runtime.base, "GET", `/v1/dlq?customerId=${customerId}&limit=500${cursor ? `&cursor=${cursor}` : ""}`);
        entries.push(...res.body.entries);
        cursor = res.body.nextCursor;
        if (!cursor) break;
      }
      alerts = (await call(runtime.base, "GET", "/v1/alerts?kind=dlq_entry&limit=500")).body.alerts.filter((a) => a.customerId === customerId);
      if ((entries.length >= failedRuns && alerts.length >= entries.length) || Date.now() > deadline) break;
      await cronTick(runtime.base);
      await sleep(2000);
    }

    const byRun = new Map();
    for (const e of entries) byRun.set(e.runId, [...(byRun.get(e.runId) ?? []), e]);
    let succeeded = 0;
    let failed = 0;
    let retried = 0;
    for (const [i, id] of ids.entries()) {
      const run = finals.get(id);
      if (!run) continue;
      const dead = byRun.get(id) ?? [];
      if (run.status === "succeeded") {
        succeeded += 1;
        if (dead.length) violations.push(`run ${id} succeeded but has ${dead.length} DLQ entries`);
      } else if (run.status === "failed") {
        failed += 1;
        if (dead.length !== 1) violations.push(`run ${id} failed (${run.failure?.type} at ${run.failure?.step}) with ${dead.length} DLQ entries, expected 1`);
      } else violations.push(`run ${id} ended ${run.status}`);
      if (runs[i].expectPermanent && run.status !== "failed") violations.push(`run ${id} had a permanent failure but ${run.status}`);
      retried += run.steps.reduce((n, s) => n + Math.max(0, s.attempts - 1), 0);

      const events = (await call(runtime.base, "GET", `/v1/runs/${id}/events`, undefined, key)).body.events;
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

    console.log("\nchaos summary");
    console.log(`  runs            ${ids.length} (succeeded ${succeeded}, failed ${failed})`);
    console.log(`  retried attempts ${retried}`);
    console.log(`  DLQ entries     ${entries.length} (one per failed run: ${failed === entries.length ? "yes" : "no"})`);
    console.log(`  alerts          ${alerts.length}`);
    console.log(`  runtime starts  ${runtime.starts} (killed with SIGKILL once)`);
    console.log(`  elapsed         ${((Date.now() - began) / 1000).toFixed(0)} s`);
    console.log(`  violations      ${violations.length}`);
    for (const v of violations.slice(0, 20)) console.log(`    - ${v}`);
  } finally {
    runtime.stop();
    await sleep(500);
    rmSync(persist, { recursive: true, force: true });
  }
  process.exit(violations.length === 0 ? 0 : 1);
}

function existsShm() {
  try {
    return execFileSync("sh", ["-c", "test -d /dev/shm && echo yes"], { encoding: "utf8" }).trim() === "yes";
  } catch {
    return false;
  }
}

main().catch((err) => {
  console.error(`chaos failed: ${err.stack ?? err}`);
  process.exit(1);
});
