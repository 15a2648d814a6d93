// The local runtime (wrangler dev --local) as the scripts drive it: migrate its D1, start it
// in its own process group with its output in a log file, wait until it answers, signal it.
// bench and chaos each carried a copy of this; start keeps its own spawning (it forwards
// wrangler's output to the terminal) but shares the waiting and the signalling.
import { execFileSync, spawn } from "node:child_process";
import { createWriteStream, existsSync } from "node:fs";
import { ROOT } from "./root.mjs";

/** wrangler non-interactive (CI: no prompts) and without telemetry. */
export const wranglerEnv = () => ({ ...process.env, WRANGLER_SEND_METRICS: "false", CI: "true" });

/** A RAM-backed directory for local state when the machine has one (/dev/shm), else null. */
export const ramDisk = () => (existsSync("/dev/shm") ? "/dev/shm" : null);

/** Applies the local D1 migrations to the state in `persist` (synchronously; errors on stderr). */
export function applyLocalMigrations({ persist, config }) {
  execFileSync("wrangler", ["d1", "migrations", "apply", "DB", "--local", ...(config ? ["--config", config] : []), "--persist-to", persist], {
    env: wranglerEnv(),
    cwd: ROOT,
    stdio: ["ignore", "ignore", "inherit"],
  });
}

/**
 * Starts `wrangler dev --local` on `port` with its state in `persist` and each of `vars` as a
 * --var, its output (stdout and stderr) written to `logFile`. Detached: its own process group,
 * so that signalGroup reaches the workerd it starts too.
 */
export function spawnDev({ port, persist, config, vars = {}, logFile, extraArgs = [] }) {
  const args = ["dev", "--local", ...(config ? ["--config", config] : []), "--port", String(port), "--persist-to", persist, "--log-level", "warn", ...extraArgs];
  for (const [k, v] of Object.entries(vars)) args.push("--var", `${k}:${v}`);
  const child = spawn("wrangler", args, { env: wranglerEnv(), cwd: ROOT, stdio: ["ignore", "pipe", "pipe"], detached: true });
  const log = createWriteStream(logFile);
  child.stdout.pipe(log);
  child.stderr.pipe(log);
  return child;
}

/**
 * Polls GET `${base}/health` until it answers 200. Resolves { up: true }; { up: false, exited: true }
 * as soon as `child` has exited (no point waiting); or { up: false, last } after `timeoutMs`,
 * `last` being the last answer or error. Each caller words its own failure.
 */
export async function waitForHealth(base, child, { timeoutMs = 60_000, intervalMs = 250, requestTimeoutMs } = {}) {
  const deadline = Date.now() + timeoutMs;
  let last = "no answer yet";
  while (Date.now() < deadline) {
    if (child && (child.exitCode !== null || child.signalCode !== null)) return { up: false, exited: true };
    try {
      const res = await fetch(`${base}/health`, requestTimeoutMs ? { signal: AbortSignal.timeout(requestTimeoutMs) } : {});
      if (res.status === 200) return { up: true };
      last = `HTTP ${res.status}`;
    } catch (err) {
      last = err?.cause?.code ?? err?.message ?? String(err);
    }
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
  return { up: false, last };
}

/** Signals every process in a detached child's process group (wrangler and its workerd, esbuild). */
export function signalGroup(child, signal = "SIGTERM") {
  try {
    process.kill(-child.pid, signal);
  } catch {
    // ESRCH: nothing left.
  }
}
