#!/usr/bin/env node
// `npm start`: run Runplane locally and offline, ready to try.
//
//   1. creates .dev.vars from .dev.vars.example when missing
//   2. applies the local D1 migrations (non-interactively)
//   3. starts `wrangler dev --local --port ${PORT:-8787}` with both Workers (wrangler.toml and the
//      heavy pool's consumer, wrangler.heavy.toml) and waits for GET /health
//   4. seeds, idempotently, a demo customer ("demo", its API key kept in
//      .wrangler/runplane-demo.json because the API shows a key only once) and the sample
//      run types "hello", "nap" and "flaky"
//   5. runs the sample run types once (one of them fails on purpose, for the DLQ), fires the
//      minute cron (wrangler dev fires none by itself) and prints what the costs and metrics
//      APIs report
//   (before 2, it builds the dashboard and /docs into dashboard/dist: the Worker's static assets)
//   6. prints the URLs, keys and ready-to-paste curl commands
//   7. fires the cron once a minute, as Cloudflare would (reconcilers, retention, metrics:
//      samples, uptime probe, rollups, degradation alerts), until Ctrl-C / SIGTERM (forwarded
//      to wrangler); exits non-zero if wrangler dies
//
// Environment: PORT (default 8787), STARTUP_TIMEOUT_MS (default 90000), CRON=0 to fire no cron.
// Plain Node ESM; it talks to the API through the project's own client (clients/typescript),
// whose TypeScript source Node runs by type stripping. npm puts node_modules/.bin (Node 22)
// first on PATH.

import { spawn } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import net from "node:net";
import { dirname, join, relative } from "node:path";
import { createInterface } from "node:readline";
import { ROOT } from "./lib/root.mjs";
import { signalGroup, waitForHealth as untilHealthy } from "./lib/runtime.mjs";

const WRANGLER_JS = join(ROOT, "node_modules", "wrangler", "bin", "wrangler.js");
const DEV_VARS = join(ROOT, ".dev.vars");
const DEV_VARS_EXAMPLE = join(ROOT, ".dev.vars.example");
const DEMO_FILE = join(ROOT, ".wrangler", "runplane-demo.json");
const DEMO_CUSTOMER_ID = "demo";

const PORT = parsePort(process.env.PORT ?? "8787");
const BASE_URL = `http://localhost:${PORT}`;
const STARTUP_TIMEOUT_MS = Number(process.env.STARTUP_TIMEOUT_MS) > 0 ? Number(process.env.STARTUP_TIMEOUT_MS) : 90_000;

const useColor = process.stdout.isTTY && !process.env.NO_COLOR;
const paint = (code) => (text) => (useColor ? `\x1b[${code}m${text}\x1b[0m` : text);
const bold = paint("1");
const dim = paint("2");
const green = paint("32");
const cyan = paint("36");
const red = paint("31");

const say = (message) => console.log(`${cyan("[start]")} ${message}`);
class StartError extends Error {}

// ---------------------------------------------------------------------------------------
// Child processes and signals

let current = null; // the child we are waiting on (migration, then wrangler dev)
let stopping = false; // a signal arrived (or start-up failed): we are shutting down on purpose
let stopExitCode = 0; // our exit code once wrangler has stopped on purpose

function childEnv(extra = {}) {
  return { ...process.env, WRANGLER_SEND_METRICS: process.env.WRANGLER_SEND_METRICS ?? "false", ...extra };
}

/** Forward a child's output line by line, prefixed. */
function forward(stream, prefix, target) {
  const lines = createInterface({ input: stream, crlfDelay: Infinity });
  lines.on("line", (line) => target.write(`${prefix} ${line}\n`));
}

function spawnWrangler(args, prefix, extraEnv) {
  const child = spawn(process.execPath, [WRANGLER_JS, ...args], {
    cwd: ROOT,
    env: childEnv(extraEnv),
    // stdin closed: wrangler sees a non-interactive session (no prompts, no hotkeys).
    stdio: ["ignore", "pipe", "pipe"],
    // Its own process group, so that whatever it leaves behind (workerd, esbuild) can be
    // swept up when it exits; we forward the signals ourselves.
    detached: true,
  });
  forward(child.stdout, dim(prefix), process.stdout);
  forward(child.stderr, dim(prefix), process.stderr);
  current = child;
  return child;
}

function onSignal(signal) {
  if (stopping) {
    // Second Ctrl-C: stop waiting politely.
    if (current) signalGroup(current, "SIGKILL");
    process.exit(130);
  }
  stopping = true;
  console.log();
  say(`${signal} received, stopping${current && current.exitCode === null ? " wrangler" : ""}…`);
  if (!current || current.exitCode !== null || current.signalCode !== null) process.exit(0);
  // wrangler's launcher passes on SIGINT and SIGTERM only.
  current.kill(signal === "SIGINT" ? "SIGINT" : "SIGTERM");
  const force = setTimeout(() => {
    say("wrangler did not stop within 10 s; killing it");
    signalGroup(current, "SIGKILL");
  }, 10_000);
  force.unref();
}
process.on("SIGINT", () => onSignal("SIGINT"));
process.on("SIGTERM", () => onSignal("SIGTERM"));
process.on("SIGHUP", () => onSignal("SIGHUP"));

// `npm start` runs us through `sh -c`, and sh does not pass npm's SIGTERM on: when our
// parent goes away we are re-parented, so treat that as a SIGTERM rather than linger.
const parentPid = process.ppid;
setInterval(() => {
  if (!stopping && process.ppid !== parentPid) onSignal("SIGTERM (parent process exited)");
}, 1000).unref();

// ---------------------------------------------------------------------------------------
// Steps

function checkEnvironment() {
  const [major, minor] = process.versions.node.split(".").map(Number);
  if (major < 22 || (major === 22 && minor < 18)) {
    throw new StartError(
      `Node ${process.versions.node} is too old (wrangler needs >= 22.12, running the API client's TypeScript >= 22.18). Run through npm ("npm start"), ` +
        `which puts the project's Node 22 from node_modules/.bin first on PATH.`,
    );
  }
  if (!existsSync(WRANGLER_JS)) throw new StartError(`wrangler is not installed (${relative(ROOT, WRANGLER_JS)} missing): run "npm install" first.`);
}

function ensureDevVars() {
  if (existsSync(DEV_VARS)) {
    say(".dev.vars exists, keeping it");
  } else {
    if (!existsSync(DEV_VARS_EXAMPLE)) throw new StartError(".dev.vars is missing and there is no .dev.vars.example to create it from");
    copyFileSync(DEV_VARS_EXAMPLE, DEV_VARS);
    say(`created .dev.vars from .dev.vars.example`);
  }
  const vars = parseDotenv(readFileSync(DEV_VARS, "utf8"));
  if (!vars.ADMIN_API_KEY) throw new StartError(".dev.vars does not set ADMIN_API_KEY (see .dev.vars.example)");
  if (!vars.SECRETS_KEY) {
    say(red("warning: .dev.vars does not set SECRETS_KEY, so PUT /v1/secrets answers 503; copy the line from .dev.vars.example"));
  }
  if (vars.RUNPLANE_ENV !== "development") {
    say(red(`warning: .dev.vars sets RUNPLANE_ENV=${vars.RUNPLANE_ENV ?? "(unset)"}; the API may refuse the dev admin key unless it is "development"`));
  }
  return vars;
}

/** The dashboard and /docs are static assets of the Worker: built before wrangler serves them. */
async function buildDashboard() {
  const { buildAssets } = await import("../dashboard/build.mjs");
  const weight = await buildAssets();
  say(`built the dashboard (dashboard/dist): ${(weight.scriptsAndStylesGzipBytes / 1024).toFixed(1)} KB of JS+CSS gzipped`);
}

async function applyMigrations() {
  say("applying local D1 migrations (wrangler d1 migrations apply DB --local)");
  // Non-interactive (stdin closed + CI=true): wrangler takes the default "yes" for its prompt.
  const child = spawnWrangler(["d1", "migrations", "apply", "DB", "--local"], "[migrate]", { CI: "true" });
  const { code } = await exited(child);
  current = null;
  if (stopping) process.exit(130);
  if (code !== 0) throw new StartError(`applying the D1 migrations failed (exit ${code}); see the [migrate] lines above`);
}

async function assertPortFree() {
  const busy = await new Promise((resolve) => {
    const socket = net.connect({ host: "localhost", port: PORT });
    socket.setTimeout(1000);
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("timeout", () => {
      socket.destroy();
      resolve(false);
    });
    socket.once("error", () => resolve(false));
  });
  if (busy) {
    throw new StartError(`port ${PORT} is already in use (another "npm start" or "wrangler dev"?). Stop it, or pick another port: PORT=${PORT === 65535 ? 8788 : PORT + 1} npm start`);
  }
}

function startWrangler() {
  say(`starting wrangler dev --local -c wrangler.toml -c wrangler.heavy.toml --port ${PORT}`);
  // Both Workers, as deployed: the main one, and the heavy pool's consumer (wrangler.heavy.toml).
  const child = spawnWrangler(["dev", "--local", "-c", "wrangler.toml", "-c", "wrangler.heavy.toml", "--port", String(PORT)], "[wrangler]");
  exited(child).then(({ code, signal }) => {
    if (stopping) {
      say(stopExitCode === 0 ? "wrangler stopped. Bye." : "wrangler stopped.");
      process.exit(stopExitCode);
    }
    console.error(red(`[start] wrangler exited unexpectedly (${signal ? `signal ${signal}` : `exit code ${code}`})`));
    process.exit(code && code !== 0 ? code : 1);
  });
  return child;
}

async function waitForHealth(child) {
  const health = await untilHealthy(BASE_URL, child, { timeoutMs: STARTUP_TIMEOUT_MS, intervalMs: 300, requestTimeoutMs: 2000 });
  if (health.up) return;
  if (health.exited) await new Promise(() => {}); // startWrangler reports it
  throw new StartError(`GET ${BASE_URL}/health did not answer 200 within ${STARTUP_TIMEOUT_MS / 1000} s (last: ${health.last}). See the [wrangler] lines above; raise STARTUP_TIMEOUT_MS if the machine is slow.`);
}

async function checkReady() {
  try {
    const { data, error, response } = await client().api.GET("/health/ready", { signal: AbortSignal.timeout(5000) });
    if (response.status !== 200) say(red(`warning: GET /health/ready answered ${response.status}: ${JSON.stringify(data ?? error)}`));
  } catch (err) {
    say(red(`warning: GET /health/ready failed: ${err.message}`));
  }
}

// ---------------------------------------------------------------------------------------
// Seeding (idempotent: the local state in .wrangler/ survives restarts)

/** The client module (clients/typescript), loaded once checkEnvironment has seen a Node that strips types. */
let Runplane;

/** The API through the project's client, with `apiKey` (none: the public routes). */
function client(apiKey) {
  return Runplane.createRunplaneClient({ baseUrl: BASE_URL, apiKey, timeoutMs: 15_000 });
}

/** The API's answer `err` (a RunplaneError) was not one this script expected. */
function unexpected(what, err) {
  if (!(err instanceof Runplane.RunplaneError)) return err;
  return new StartError(`${what}: unexpected HTTP ${err.status} ${err.code}: ${err.message.slice(0, 500)}`);
}

/** The API refused with one of `statuses`: the caller carries on; anything else is thrown. */
function refusedWith(err, ...statuses) {
  return err instanceof Runplane.RunplaneError && statuses.includes(err.status);
}

function readDemoFile() {
  if (!existsSync(DEMO_FILE)) return null;
  try {
    const data = JSON.parse(readFileSync(DEMO_FILE, "utf8"));
    return typeof data?.apiKey === "string" && data.apiKey ? data : null;
  } catch {
    say(red(`warning: ${relative(ROOT, DEMO_FILE)} is not valid JSON; replacing it`));
    return null;
  }
}

function writeDemoFile(data) {
  mkdirSync(dirname(DEMO_FILE), { recursive: true });
  const tmp = `${DEMO_FILE}.tmp`;
  writeFileSync(tmp, `${JSON.stringify(data, null, 2)}\n`, { mode: 0o600 });
  renameSync(tmp, DEMO_FILE);
}

const DEMO_CUSTOMER = {
  id: DEMO_CUSTOMER_ID,
  name: "Demo Customer",
  plan: { monthlyFeeUsd: "49", pricePerRunUsd: "0.01" },
  budget: { monthlyLimitUsd: "100" },
};

async function seedDemoCustomer(admin) {
  const saved = readDemoFile();
  const demo = { params: { path: { id: DEMO_CUSTOMER_ID } } };
  const exists = await admin.GET("/v1/customers/{id}", demo).then(
    () => true,
    (err) => {
      if (refusedWith(err, 404)) return false;
      throw unexpected(`GET /v1/customers/${DEMO_CUSTOMER_ID} with the admin key`, err);
    },
  );
  if (!exists) {
    try {
      const created = await admin.POST("/v1/customers", { body: DEMO_CUSTOMER });
      const data = { customerId: DEMO_CUSTOMER_ID, apiKey: created.apiKey, keyId: created.keyId, createdAt: new Date().toISOString() };
      writeDemoFile(data);
      say(`created demo customer "${DEMO_CUSTOMER_ID}"; its API key is saved in ${relative(ROOT, DEMO_FILE)}`);
      return data;
    } catch (err) {
      // 409: created concurrently; carry on as "exists".
      if (!refusedWith(err, 409)) throw unexpected("creating the demo customer", err);
    }
  }

  if (saved) {
    try {
      await client(saved.apiKey).GET("/v1/customers/{id}", demo);
      say(`demo customer "${DEMO_CUSTOMER_ID}" exists; reusing the API key saved in ${relative(ROOT, DEMO_FILE)}`);
      return saved;
    } catch (err) {
      if (!refusedWith(err, 401, 404)) throw unexpected("checking the saved demo API key", err);
      say(`the API key saved in ${relative(ROOT, DEMO_FILE)} is no longer valid (HTTP ${err.status}); creating a new one`);
    }
  } else {
    say(`demo customer "${DEMO_CUSTOMER_ID}" exists but ${relative(ROOT, DEMO_FILE)} is missing; creating a new API key`);
  }
  const key = await admin.POST("/v1/customers/{id}/keys", demo).catch((err) => {
    throw unexpected("creating a demo API key", err);
  });
  const data = { customerId: DEMO_CUSTOMER_ID, apiKey: key.apiKey, keyId: key.key.id, createdAt: new Date().toISOString() };
  writeDemoFile(data);
  return data;
}

const RUN_TYPES = {
  // Three quick steps; "transform" uses the run input and an earlier step's output.
  hello: {
    steps: [
      {
        name: "fetch",
        type: "synthetic",
        config: {
          durationMs: 150,
          output: { greeting: "Hello", source: "synthetic" },
          usage: { model: "gpt-4o-mini", inputTokens: 1200, outputTokens: 300, cachedTokens: 200 },
        },
      },
      {
        name: "transform",
        type: "synthetic",
        config: { durationMs: 100, output: { message: "{{steps.fetch.output.greeting}}, {{input.name}}!" } },
      },
      {
        name: "store",
        type: "synthetic",
        config: { durationMs: 50, output: { stored: true, message: "{{steps.transform.output.message}}" } },
      },
    ],
  },
  // A durable timer between two steps: the run shows "waiting" for about 2 s.
  nap: {
    steps: [
      { name: "before", type: "synthetic", config: { durationMs: 50, output: { phase: "before" } } },
      { name: "nap", type: "sleep", config: { durationMs: 2000 } },
      { name: "after", type: "synthetic", config: { durationMs: 50, output: { phase: "after" } } },
    ],
  },
  // Fails for good (permanent): the run fails and is dead-lettered, with an alert.
  broken: {
    steps: [{ name: "explode", type: "synthetic", config: { durationMs: 20, failTimes: 100, failKind: "permanent" } }],
  },
  // Fails its first attempt (transient), succeeds on the retry.
  flaky: {
    steps: [
      {
        name: "wobbly",
        type: "synthetic",
        config: { durationMs: 50, failTimes: 1, output: { ok: true } },
        retry: { maxAttempts: 3, initialDelayMs: 200, maxDelayMs: 2000, backoffFactor: 2 },
      },
    ],
  },
};

async function seedRunTypes(admin) {
  const results = [];
  for (const [name, definition] of Object.entries(RUN_TYPES)) {
    // The raw call: whether it was created (201) or replaced (200) is in the status.
    const { error, response } = await admin.api.PUT("/v1/run-types/{name}", { params: { path: { name } }, body: definition });
    if (!response.ok) throw unexpected(`PUT /v1/run-types/${name}`, Runplane.RunplaneError.fromResponse(response, error));
    results.push(`${name} (${response.status === 201 ? "created" : "up to date"})`);
  }
  say(`run types: ${results.join(", ")}`);
}

// ---------------------------------------------------------------------------------------
// Banner

function banner(adminKey, demo) {
  const u = BASE_URL;
  const auth = `-H 'Authorization: Bearer ${demo.apiKey}'`;
  const post = `curl -s -w '\\n' -X POST ${auth} -H 'Content-Type: application/json'`;
  const get = `curl -s -w '\\n' ${auth}`;
  const runId = `node -pe 'JSON.parse(require("fs").readFileSync(0,"utf8")).run.id'`;
  const inline = JSON.stringify({
    projectId: "demo",
    steps: [
      { name: "pick", type: "synthetic", config: { durationMs: 100, output: { n: 7 } } },
      { name: "describe", type: "synthetic", config: { output: { text: "got {{steps.pick.output.n}} for {{input.who}}" } } },
    ],
    input: { who: "inline" },
  });
  const line = "═".repeat(78);
  const lines = [
    "",
    green(line),
    green(bold("  Runplane is running locally (offline: wrangler dev --local)")),
    green(line),
    `  Base URL        ${bold(u)}`,
    `  Dashboard       ${bold(`${u}/dashboard/`)}   ${dim("(sign in with the admin key or the demo key)")}`,
    `  API docs        ${u}/docs/`,
    `  OpenAPI         ${u}/openapi.json`,
    `  Admin key       ${bold(adminKey)}   ${dim("(from .dev.vars)")}`,
    `  Demo customer   ${bold(demo.customerId)}`,
    `  Demo API key    ${bold(demo.apiKey)}   ${dim(`(saved in ${relative(ROOT, DEMO_FILE)})`)}`,
    `  Run types       hello (3 steps), nap (sleeps 2 s), flaky (fails once, then retries), broken (fails: DLQ)`,
    "",
    bold("  Try it (paste into a shell):"),
    "",
    dim("  # submit a \"hello\" run"),
    `  ${post} ${u}/v1/runs -d '{"projectId":"demo","runType":"hello","input":{"name":"world"}}'`,
    "",
    dim("  # get a run: replace RUN_ID with the id printed above"),
    `  ${get} ${u}/v1/runs/RUN_ID`,
    "",
    dim("  # or submit and capture the id in one go, then fetch the run"),
    `  RUN_ID=$(${post} ${u}/v1/runs -d '{"projectId":"demo","runType":"hello","input":{"name":"world"}}' | ${runId}); echo $RUN_ID`,
    `  ${get} ${u}/v1/runs/$RUN_ID`,
    "",
    dim("  # list runs · the run's event timeline"),
    `  ${get} '${u}/v1/runs?limit=10'`,
    `  ${get} ${u}/v1/runs/$RUN_ID/events`,
    "",
    dim("  # cancel: start a \"nap\" run (it sleeps 2 s) and cancel it before it finishes"),
    `  NAP_ID=$(${post} ${u}/v1/runs -d '{"projectId":"demo","runType":"nap"}' | ${runId}); echo $NAP_ID`,
    `  curl -s -w '\\n' -X POST ${auth} ${u}/v1/runs/$NAP_ID/cancel`,
    "",
    dim("  # idempotency: run twice, the second answers HTTP 200 with the same run"),
    `  ${post.replace("-w '\\n'", "-w '\\nHTTP %{http_code}\\n'")} ${u}/v1/runs -d '{"projectId":"demo","runType":"hello","input":{"name":"once"},"idempotencyKey":"order-42"}'`,
    "",
    dim("  # a retrying run · a run with inline steps instead of a run type"),
    `  ${post} ${u}/v1/runs -d '{"projectId":"demo","runType":"flaky"}'`,
    `  ${post} ${u}/v1/runs -d '${inline}'`,
    "",
    dim("  # metrics (bucket=hour|day|week|month, groupBy=customer|project|runType|pool|model|route), alerts, Prometheus"),
    `  ${get} '${u}/v1/metrics/runs?bucket=hour&groupBy=runType'`,
    `  ${get} '${u}/v1/metrics/costs?bucket=day&groupBy=model'`,
    `  curl -s -w '\\n' -H 'Authorization: Bearer ${adminKey}' '${u}/v1/metrics/queues?bucket=hour'`,
    `  curl -s -w '\\n' -H 'Authorization: Bearer ${adminKey}' '${u}/v1/metrics/api?bucket=hour&groupBy=route'`,
    `  curl -s -w '\\n' -H 'Authorization: Bearer ${adminKey}' ${u}/v1/insights/cost-drivers`,
    `  curl -s -H 'Authorization: Bearer ${adminKey}' ${u}/metrics`,
    `  npx wrangler d1 execute DB --local --command "SELECT * FROM v_run_metrics_daily"   ${dim("(docs/analytics.md)")}`,
    "",
    dim("  # admin: customers and run types"),
    `  curl -s -w '\\n' -H 'Authorization: Bearer ${adminKey}' ${u}/v1/customers`,
    `  curl -s -w '\\n' -H 'Authorization: Bearer ${adminKey}' ${u}/v1/run-types`,
    "",
    `  Press ${bold("Ctrl-C")} to stop. Local state persists in .wrangler/ (delete .wrangler/state to start over).`,
    green(line),
    "",
  ];
  console.log(lines.join("\n"));
}

// ---------------------------------------------------------------------------------------
// Helpers

function parsePort(value) {
  const port = Number(value);
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    console.error(`[start] PORT must be a TCP port number, not "${value}"`);
    process.exit(2);
  }
  return port;
}

function parseDotenv(text) {
  const vars = {};
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    if (!line || line.startsWith("#")) continue;
    const match = /^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$/.exec(line);
    if (!match) continue;
    let value = match[2];
    if (/^(["']).*\1$/.test(value)) value = value.slice(1, -1);
    else value = value.replace(/\s+#.*$/, "");
    vars[match[1]] = value;
  }
  return vars;
}

/**
 * Resolves once a child has exited and its output has been forwarded (its pipes closed, or
 * a second later if something it left behind holds them), after sweeping its process group.
 */
function exited(child) {
  return new Promise((resolve) => {
    child.once("error", (err) => {
      console.error(red(`[start] could not run wrangler: ${err.message}`));
      resolve({ code: 1, signal: null });
    });
    child.once("exit", (code, signal) => {
      signalGroup(child); // sweep up what it left behind (workerd, esbuild)
      const done = () => resolve({ code, signal });
      child.once("close", done);
      setTimeout(done, 1000).unref();
    });
  });
}

// ---------------------------------------------------------------------------------------

/**
 * Runs the sample run types once for the demo customer and prints what they cost, by customer
 * and by model, as the costs API reports it: the platform's cost tracking, visible at once.
 */
async function demoCosts(admin, demo) {
  const runplane = client(demo.apiKey ?? demo.key);
  const ids = [];
  for (const runType of ["hello", "hello", "flaky", "broken"]) {
    const { run } = await runplane.POST("/v1/runs", { body: { projectId: "demo", runType, input: { name: "world" } } }).catch((err) => {
      throw unexpected(`POST /v1/runs (${runType})`, err);
    });
    ids.push(run.id);
  }
  const deadline = Date.now() + 20_000;
  for (const id of ids) {
    try {
      await runplane.waitForRun(id, { intervalMs: 200, timeoutMs: Math.max(0, deadline - Date.now()) });
    } catch (err) {
      if (err instanceof Runplane.RunWaitTimeoutError) return say("sample runs are still running; skipping the cost demo");
      throw unexpected(`GET /v1/runs/${id}`, err);
    }
  }
  // Cost events reach D1 through the events queue a moment after each step. The demo only
  // shows them: a report that fails is named and leaves its lines out.
  let failure;
  const report = (groupBy) =>
    admin.GET("/v1/costs", { params: { query: { groupBy } } }).catch((err) => {
      failure = err;
      return undefined;
    });
  let byCustomer;
  let byModel;
  for (let i = 0; i < 20; i++) {
    byCustomer = await report("customer");
    byModel = await report("model");
    if (byModel?.rows?.some((r) => r.aiNanoUsd && r.aiNanoUsd !== "0" && r.aiNanoUsd !== 0)) break;
    await new Promise((r) => setTimeout(r, 250));
  }
  const line = (r) => `    ${String(r.key).padEnd(24)} runs ${String(r.runs).padStart(4)}   total $${r.totalUsd ?? r.totalNanoUsd}   (${r.totalNanoUsd} nano-USD; AI ${r.aiNanoUsd}, infra ${r.infraNanoUsd})`;
  say(`ran the sample run types once: ${ids.join(", ")}`);
  say("month-to-date cost by customer (GET /v1/costs?groupBy=customer):");
  for (const r of byCustomer?.rows ?? []) console.log(line(r));
  say("by model (GET /v1/costs?groupBy=model):");
  for (const r of byModel?.rows ?? []) console.log(line(r));
  if (!byCustomer || !byModel) say(red(`warning: GET /v1/costs failed: ${failure?.message ?? failure}`));
}

/** wrangler dev fires no cron by itself: the script does, as Cloudflare would each minute. */
async function fireCron() {
  try {
    await fetch(`${BASE_URL}/cdn-cgi/local/scheduled`, { signal: AbortSignal.timeout(30_000) });
  } catch (err) {
    say(red(`warning: firing the cron failed: ${err.message}`));
  }
}

/**
 * The metrics after the demo runs: one cron tick samples the pools, probes the control plane and
 * flushes the API timings (through the events queue); the next rolls them up.
 */
async function demoMetrics(adminKey, demo) {
  await fireCron();
  await new Promise((r) => setTimeout(r, 3000));
  await fireCron();
  const hour = Math.floor(Date.now() / 3_600_000) * 3_600_000;
  const query = { from: new Date(hour - 86_400_000).toISOString(), to: new Date(hour + 3_600_000).toISOString(), bucket: "day" };
  // The demo only shows the figures: one that cannot be read is left out, with a warning.
  const get = (path, key = adminKey) =>
    client(key)
      .GET(path, { params: { query } })
      .catch((err) => {
        say(red(`warning: GET ${path} failed: ${err?.message ?? err}`));
        return undefined;
      });
  const runs = (await get("/v1/metrics/runs", demo.apiKey ?? demo.key))?.totals;
  const costs = (await get("/v1/metrics/costs", demo.apiKey ?? demo.key))?.totals;
  const queues = (await get("/v1/metrics/queues"))?.totals;
  const workers = (await get("/v1/metrics/workers"))?.totals;
  const apiTimes = (await get("/v1/metrics/api"))?.totals;
  const reliability = (await get("/v1/metrics/reliability"))?.totals;
  const pct = (x) => (x === null || x === undefined ? "n/a" : `${(x * 100).toFixed(1)}%`);
  say("metrics of the last day (GET /v1/metrics/*; docs/analytics.md for the SQL views):");
  if (runs) console.log(`    runs         ${runs.runs} created, ${runs.succeeded} succeeded, ${runs.failed} failed · success ${pct(runs.successRate)} · p50 ${runs.durationMs.p50} ms, p95 ${runs.durationMs.p95} ms`);
  if (costs) console.log(`    costs        $${costs.totalUsd} · per run $${costs.costPerRunUsd} · AI $${costs.aiUsd} · tokens in ${costs.inputTokens} / out ${costs.outputTokens}`);
  if (queues) console.log(`    queues       depth avg ${queues.depth?.avg ?? "n/a"} · ${queues.processed} jobs processed · retry rate ${pct(queues.retryRate)} · DLQ open ${queues.dlqOpen}`);
  if (workers) console.log(`    workers      utilization ${pct(workers.utilization)} · worker errors ${pct(workers.workerErrorRate)}`);
  if (apiTimes) console.log(`    api          ${apiTimes.requests} requests · p50 ${apiTimes.latencyMs.p50} ms, p95 ${apiTimes.latencyMs.p95} ms, p99 ${apiTimes.latencyMs.p99} ms`);
  if (reliability) console.log(`    reliability  uptime ${pct(reliability.uptime.uptime)} (${reliability.uptime.okProbes}/${reliability.uptime.expectedProbes} minutes) · run failures ${pct(reliability.runFailureRate)} · retries ${pct(reliability.retryRate)}`);
}

async function main() {
  process.chdir(ROOT);
  checkEnvironment();
  Runplane = await import("../clients/typescript/src/index.ts");
  const vars = ensureDevVars();
  await assertPortFree();
  await buildDashboard();
  await applyMigrations();
  const child = startWrangler();
  await waitForHealth(child);
  if (stopping) return;
  say(`GET /health answered 200`);
  await checkReady();
  const admin = client(vars.ADMIN_API_KEY);
  await seedRunTypes(admin);
  const demo = await seedDemoCustomer(admin);
  if (stopping) return;
  await demoCosts(admin, demo);
  if (stopping) return;
  if (process.env.CRON !== "0") await demoMetrics(vars.ADMIN_API_KEY, demo);
  if (stopping) return;
  banner(vars.ADMIN_API_KEY, demo);
  if (process.env.CRON !== "0") setInterval(() => void fireCron(), 60_000).unref();
  // From here the exit handler of wrangler decides how we end.
}

main().catch((err) => {
  if (stopping) return;
  console.error(red(`[start] ${err instanceof StartError ? err.message : err?.stack ?? err}`));
  if (current && current.exitCode === null && current.signalCode === null) {
    stopping = true; // startWrangler's exit handler then exits with stopExitCode
    stopExitCode = 1;
    current.kill("SIGTERM");
    setTimeout(() => process.exit(1), 10_000).unref();
  } else {
    process.exit(1);
  }
});
