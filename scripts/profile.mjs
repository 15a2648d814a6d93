#!/usr/bin/env node
/**
 * npm run profile — where a run's CPU goes, by component. Starts the bench runtime (one
 * wrangler dev process, bench/wrangler.bench.toml) with its inspector on, samples the CPU of
 * the Worker's isolate (Durable Objects and queue consumers run in the same one) while
 * `npm run bench -- --variants runplane` drives it, and attributes every sample to the innermost
 * component frame on its stack (a log line written inside a checkpoint counts as logs).
 *
 *   npm run profile -- --runs 300 --steps 5 [--log-level warn] [--out bench-results/profile.json]
 *
 * Components are matched by function name (wrangler bundles the Worker, so file names are
 * gone; esbuild keeps function and method names). Samples under no component frame are
 * "other": the runtime's own work between handlers (request plumbing, queue delivery, GC).
 */
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { ROOT } from "./lib/root.mjs";
import { applyLocalMigrations, ramDisk, signalGroup, spawnDev, waitForHealth } from "./lib/runtime.mjs";

const opts = { runs: 300, steps: 5, port: 8791, inspectorPort: 9239, logLevel: null, out: null };
for (let i = 2; i < process.argv.length; i++) {
  const flag = process.argv[i];
  const value = () => process.argv[++i];
  if (flag === "--runs") opts.runs = Number(value());
  else if (flag === "--steps") opts.steps = Number(value());
  else if (flag === "--port") opts.port = Number(value());
  else if (flag === "--log-level") opts.logLevel = value();
  else if (flag === "--out") opts.out = value();
  else {
    console.error(`unknown flag ${flag}`);
    process.exit(2);
  }
}

/**
 * Component → the function names that enter it, innermost first when stacks nest. Names are
 * the platform's own entry points, so the table follows the code's rooms.
 */
const COMPONENTS = [
  ["logs", ["log", "emitLog", "configureLogging"]],
  ["cost metering (journal, ledger)", ["deliverCosts", "record", "append", "addOverhead", "persistState", "recordLateUsage", "priceBook", "holdBudget", "admit", "admitRun"]],
  ["run index and analytics (events queue, D1)", ["sendIndexUpdate", "indexMessage", "consumeEvents", "writeEffects", "writeRollups"]],
  ["checkpoint (commit, rows, alarm)", ["commit", "armAlarm", "stepRow", "stepFromRow", "load"]],
  ["run machine (pure transitions)", ["createRun", "advance", "fireTimers", "mergeOutcomes", "queueStep", "recordFailure", "setRunStatus"]],
  ["start/complete RPCs (run object)", ["startStep", "completeStep", "failStep", "heartbeat", "startAttempt", "assign"]],
  ["dispatch and the consumer invocation", ["consumeJobs", "handleJob", "sendDispatches", "executeAssignment", "executeResolved", "queue"]],
  ["run object creation and schema", ["create", "createSchema", "migrateSchema"]],
  ["API request (auth, validation, Hono)", ["authenticate", "fetch", "dispatch", "compose", "validator"]],
];
/**
 * Components whose entry owns all that runs beneath it (the pool controller's RPCs: its logs,
 * storage and state are its cost, not the rooms whose helper names they share).
 */
const OWNING = [["pool controller (admission, scaling)", ["enqueue", "done", "renew"]]];
const ownerOf = new Map();
for (const [name, fns] of OWNING) for (const fn of fns) ownerOf.set(fn, name);
const componentOf = new Map();
for (const [name, fns] of COMPONENTS) for (const fn of fns) if (!componentOf.has(fn)) componentOf.set(fn, { name });

async function cdp(url) {
  // wrangler's inspector proxy wants an Origin it allows (Node's WebSocket sends none by default).
  const socket = new WebSocket(url, { headers: { origin: "http://127.0.0.1" } });
  await new Promise((resolve, reject) => {
    socket.addEventListener("open", resolve, { once: true });
    socket.addEventListener("error", (e) => reject(new Error(`inspector ${url}: ${e?.message ?? "connection failed"}`)), { once: true });
  });
  let id = 0;
  const pending = new Map();
  socket.addEventListener("message", (event) => {
    const msg = JSON.parse(String(event.data));
    if (msg.id && pending.has(msg.id)) {
      pending.get(msg.id)(msg);
      pending.delete(msg.id);
    }
  });
  return {
    send: (method, params = {}) =>
      new Promise((resolve, reject) => {
        const mid = ++id;
        pending.set(mid, (msg) => (msg.error ? reject(new Error(`${method}: ${msg.error.message}`)) : resolve(msg.result)));
        socket.send(JSON.stringify({ id: mid, method, params }));
      }),
    close: () => socket.close(),
  };
}

/** Self time per sample, attributed to the innermost component frame on its stack. */
function attribute(profile) {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const cache = new Map();
  const componentFor = (nodeId) => {
    if (cache.has(nodeId)) return cache.get(nodeId);
    let best = null;
    for (let id = nodeId; id !== undefined; id = parent.get(id)) {
      const owner = ownerOf.get(byId.get(id).callFrame.functionName);
      if (owner) {
        cache.set(nodeId, owner);
        return owner;
      }
    }
    for (let id = nodeId; id !== undefined; id = parent.get(id)) {
      const fn = byId.get(id).callFrame.functionName;
      const hit = componentOf.get(fn);
      if (hit) {
        best = hit.name;
        break; // innermost wins
      }
      if (fn === "(idle)") {
        best = "(idle)";
        break;
      }
      if (fn === "(garbage collector)") {
        best = "garbage collection";
        break;
      }
    }
    const name = best ?? "other (runtime plumbing, libraries outside a component)";
    cache.set(nodeId, name);
    return name;
  };
  const totals = new Map();
  const otherSelf = new Map();
  profile.samples.forEach((nodeId, i) => {
    const us = profile.timeDeltas[i + 1] ?? 0;
    const name = componentFor(nodeId);
    totals.set(name, (totals.get(name) ?? 0) + us);
    if (name.startsWith("other") || name.startsWith("pool controller")) {
      const fn = `${name.startsWith("other") ? "" : "controller:"}${byId.get(nodeId).callFrame.functionName || "(anonymous)"}`;
      otherSelf.set(fn, (otherSelf.get(fn) ?? 0) + us);
    }
  });
  return { totals, otherSelf };
}

async function main() {
  const config = path.join(ROOT, "bench", "wrangler.bench.toml");
  const persist = mkdtempSync(path.join(ramDisk() ?? os.tmpdir(), "runplane-profile-"));
  applyLocalMigrations({ persist, config });
  const logFile = path.join(persist, "wrangler.log");
  // The bench's runtime settings: its admin key, and the log level asked for.
  const vars = { ADMIN_API_KEY: "bench-admin-key", ...(opts.logLevel ? { LOG_LEVEL: opts.logLevel } : {}) };
  const child = spawnDev({ port: opts.port, persist, config, vars, logFile, extraArgs: ["--inspector-port", String(opts.inspectorPort)] });
  const base = `http://127.0.0.1:${opts.port}`;
  try {
    const up = await waitForHealth(base, child, { timeoutMs: 90_000 });
    if (!up.up) throw new Error(`runtime did not come up (${up.exited ? "exited" : up.last}); see ${logFile}`);
    const targets = await (await fetch(`http://127.0.0.1:${opts.inspectorPort}/json`)).json();
    if (targets.length === 0) throw new Error("the inspector lists no isolate");
    if (process.env.PROFILE_DEBUG) console.error(JSON.stringify(targets));
    const sessions = await Promise.all(targets.map((t) => cdp(t.webSocketDebuggerUrl)));
    for (const s of sessions) {
      await s.send("Profiler.enable");
      await s.send("Profiler.setSamplingInterval", { interval: 250 });
      await s.send("Profiler.start");
    }
    const wall = Date.now();
    await new Promise((resolve, reject) => {
      const bench = spawn(process.execPath, [path.join(ROOT, "scripts", "bench.mjs"), "--variants", "runplane", "--url", base, "--runs", String(opts.runs), "--steps", String(opts.steps), "--rounds", "1"], {
        cwd: ROOT,
        stdio: ["ignore", "inherit", "inherit"],
      });
      bench.on("exit", (code) => (code === 0 ? resolve() : reject(new Error(`bench exited ${code}`))));
    });
    const totals = new Map();
    const otherSelf = new Map();
    for (const s of sessions) {
      const { profile } = await s.send("Profiler.stop");
      const attributed = attribute(profile);
      for (const [k, v] of attributed.totals) totals.set(k, (totals.get(k) ?? 0) + v);
      for (const [k, v] of attributed.otherSelf) otherSelf.set(k, (otherSelf.get(k) ?? 0) + v);
      s.close();
    }
    const steps = opts.runs * opts.steps;
    const busy = [...totals].filter(([k]) => k !== "(idle)").reduce((a, [, v]) => a + v, 0);
    const rows = [...totals].filter(([k]) => k !== "(idle)").sort((a, b) => b[1] - a[1]);
    console.log(`\nCPU of the Worker isolate while ${opts.runs} runs × ${opts.steps} steps ran (${((Date.now() - wall) / 1000).toFixed(1)} s wall), by component:`);
    console.log("component | ms total | µs per step | share");
    for (const [name, us] of rows) console.log(`${name} | ${(us / 1000).toFixed(0)} | ${(us / steps).toFixed(0)} | ${((100 * us) / busy).toFixed(1)}%`);
    console.log(`all (busy) | ${(busy / 1000).toFixed(0)} | ${(busy / steps).toFixed(0)} | 100%`);
    const self = [...otherSelf].sort((a, b) => b[1] - a[1]);
    const topOther = self.filter(([fn]) => !fn.startsWith("controller:")).slice(0, 8);
    const topController = self.filter(([fn]) => fn.startsWith("controller:")).slice(0, 8);
    console.log(`\n"other", by self time: ${topOther.map(([fn, us]) => `${fn} ${(us / 1000).toFixed(0)} ms`).join(", ")}`);
    console.log(`the pool controller, by self time: ${topController.map(([fn, us]) => `${fn.slice("controller:".length)} ${(us / 1000).toFixed(0)} ms`).join(", ")}`);
    if (opts.out) writeFileSync(opts.out, JSON.stringify({ options: opts, steps, totalsMicros: Object.fromEntries(totals), otherSelfMicros: Object.fromEntries(topOther) }, null, 2));
  } finally {
    signalGroup(child, "SIGTERM");
    await new Promise((r) => setTimeout(r, 1000));
    signalGroup(child, "SIGKILL");
    rmSync(persist, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(err?.stack ?? String(err));
  process.exit(1);
});
