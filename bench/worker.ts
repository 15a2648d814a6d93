/**
 * The benchmark Worker: Runplane itself, untouched, plus the variants it is compared with,
 * doing the same work per step:
 *  - workflows: a Cloudflare Workflow with one `step.do` per step;
 *  - floor:     K queue messages per run that a bare consumer only acks (the least any
 *               queue-based design can do on this runtime);
 *  - chain:     a queue-only chain: each step's consumer sends the next step's message;
 *  - object:    the least a per-run Durable Object design must do: the object is created with
 *               one row and sends one dispatch; the consumer checkpoints each step in the object
 *               (one RPC, one SQLite row) and carries the run on inline, as Runplane does. No
 *               API, validation, leases, alarm, cost metering, index or logs.
 * Every variant records (created, finished) per run in D1 table bench_results; Runplane's
 * own run index serves for it. Billable operations are counted by src/lib/usage.ts.
 */
import { DurableObject, WorkflowEntrypoint, type WorkflowEvent, type WorkflowStep } from "cloudflare:workers";
import runplane from "../src/index";
import { countD1, countUsage, usageTotals } from "../src/lib/usage";

export { RunCoordinator, CustomerLedger, RateLimiter, PoolController } from "../src/index";

interface BenchEnv extends Env {
  BENCH_WORKFLOW: Workflow<BenchRun>;
  BENCH_FLOOR: Queue<BenchMessage>;
  BENCH_CHAIN: Queue<BenchMessage>;
  BENCH_OBJECT: Queue<BenchMessage>;
  BENCH_RUN_OBJECT: DurableObjectNamespace<BenchRunObject>;
}

interface BenchRun {
  trial: string;
  id: string;
  steps: number;
  failRate: number;
  createdAt: number;
}

interface BenchMessage extends BenchRun {
  step: number;
}

const VARIANT_OF_QUEUE: Record<string, "floor" | "chain"> = { "runplane-bench-floor": "floor", "runplane-bench-chain": "chain" };
const OBJECT_QUEUE = "runplane-bench-object";

let tableReady = false;
async function ensureTable(db: D1Database) {
  if (tableReady) return;
  await db.exec(
    "CREATE TABLE IF NOT EXISTS bench_results (variant TEXT NOT NULL, trial TEXT NOT NULL, run_id TEXT NOT NULL, created_at INTEGER NOT NULL, finished_at INTEGER NOT NULL, PRIMARY KEY (variant, trial, run_id))",
  );
  tableReady = true;
}

async function recordFinished(env: BenchEnv, variant: string, run: BenchRun) {
  await ensureTable(env.DB);
  countD1(
    await env.DB.prepare("INSERT OR IGNORE INTO bench_results (variant, trial, run_id, created_at, finished_at) VALUES (?, ?, ?, ?, ?)")
      .bind(variant, run.trial, run.id, run.createdAt, Date.now())
      .run(),
  );
}

/** The same trivial work as a `synthetic` step with no duration: decide, maybe fail, return. */
function stepWork(name: string, failRate: number) {
  if (failRate > 0 && Math.random() < failRate) throw new Error("synthetic transient failure");
  return { step: name, attempt: 1 };
}

export class BenchWorkflow extends WorkflowEntrypoint<BenchEnv, BenchRun> {
  override async run(event: WorkflowEvent<BenchRun>, step: WorkflowStep) {
    countUsage("worker_requests");
    const run = event.payload;
    for (let i = 0; i < run.steps; i++) {
      await step.do(`s${i}`, { retries: { limit: 5, delay: 100, backoff: "constant" } }, async () => stepWork(`s${i}`, run.failRate));
    }
    await recordFinished(this.env, "workflows", run);
  }
}

/** Queue-only variants: a bare ack per message (floor) or a chain of sends (chain). */
const floorAcks = new Map<string, number>();

async function consumeBench(batch: MessageBatch<BenchMessage>, env: BenchEnv, variant: "floor" | "chain") {
  countUsage("worker_requests");
  countUsage("queue_operations", batch.messages.length);
  for (const message of batch.messages) {
    const m = message.body;
    try {
      stepWork(`s${m.step}`, m.failRate);
    } catch {
      message.retry();
      countUsage("queue_operations");
      continue;
    }
    message.ack();
    countUsage("queue_operations");
    if (variant === "floor") {
      const done = (floorAcks.get(m.id) ?? 0) + 1;
      if (done === m.steps) {
        floorAcks.delete(m.id);
        await recordFinished(env, "floor", m);
      } else floorAcks.set(m.id, done);
    } else if (m.step + 1 < m.steps) {
      await env.BENCH_CHAIN.send({ ...m, step: m.step + 1 });
      countUsage("queue_operations");
    } else {
      await recordFinished(env, "chain", m);
    }
  }
}

/** One object per run: a run row, then one checkpoint row per step; the last step records the run as finished. */
export class BenchRunObject extends DurableObject<BenchEnv> {
  async create(run: BenchRun): Promise<void> {
    countUsage("do_requests");
    const sql = this.ctx.storage.sql;
    sql.exec("CREATE TABLE IF NOT EXISTS run (id TEXT PRIMARY KEY, body TEXT NOT NULL, done INTEGER NOT NULL DEFAULT 0); CREATE TABLE IF NOT EXISTS steps (idx INTEGER PRIMARY KEY, output TEXT NOT NULL)");
    const cursor = sql.exec("INSERT OR IGNORE INTO run (id, body) VALUES (?, ?)", run.id, JSON.stringify(run));
    countUsage("do_rows_written", cursor.rowsWritten);
    await this.env.BENCH_OBJECT.send({ ...run, step: 0 });
    countUsage("queue_operations");
  }

  /** Checkpoints step `index`'s output; returns whether the run has a next step. */
  async complete(index: number, output: unknown): Promise<{ next: boolean }> {
    countUsage("do_requests");
    const run = JSON.parse(String(this.ctx.storage.sql.exec<{ body: string }>("SELECT body FROM run").one().body)) as BenchRun;
    const cursor = this.ctx.storage.sql.exec("INSERT OR REPLACE INTO steps (idx, output) VALUES (?, ?)", index, JSON.stringify(output));
    countUsage("do_rows_written", cursor.rowsWritten);
    if (index + 1 < run.steps) return { next: true };
    await recordFinished(this.env, "object", run);
    return { next: false };
  }
}

async function consumeObjectRuns(batch: MessageBatch<BenchMessage>, env: BenchEnv) {
  countUsage("worker_requests");
  countUsage("queue_operations", batch.messages.length);
  await Promise.all(
    batch.messages.map(async (message) => {
      const m = message.body;
      const stub = env.BENCH_RUN_OBJECT.get(env.BENCH_RUN_OBJECT.idFromName(`${m.trial}-${m.id}`));
      for (let step = m.step; ; step++) {
        let output: unknown;
        try {
          output = stepWork(`s${step}`, m.failRate);
        } catch {
          // The transient failure is retried by the queue from this step on.
          await env.BENCH_OBJECT.send({ ...m, step }, { delaySeconds: 0 });
          countUsage("queue_operations");
          break;
        }
        if (!(await stub.complete(step, output)).next) break;
      }
      message.ack();
      countUsage("queue_operations");
    }),
  );
}

const BenchRunBody = (body: unknown): BenchRun => {
  const b = body as Partial<BenchRun>;
  if (typeof b.trial !== "string" || typeof b.id !== "string" || !Number.isInteger(b.steps) || typeof b.failRate !== "number") {
    throw new Error("body must be {trial, id, steps, failRate}");
  }
  return { trial: b.trial, id: b.id, steps: b.steps!, failRate: b.failRate, createdAt: Date.now() };
};

async function benchFetch(request: Request, env: BenchEnv): Promise<Response> {
  const url = new URL(request.url);
  const [, , variant, action] = url.pathname.split("/");
  if (url.pathname === "/bench/usage") return Response.json(usageTotals(url.searchParams.get("reset") === "1"));
  if (action === "run" && request.method === "POST") {
    countUsage("worker_requests");
    const run = BenchRunBody(await request.json());
    if (variant === "workflows") await env.BENCH_WORKFLOW.create({ id: `${run.trial}-${run.id}`, params: run });
    else if (variant === "floor") {
      await env.BENCH_FLOOR.sendBatch(Array.from({ length: run.steps }, (_, step) => ({ body: { ...run, step } })));
      countUsage("queue_operations", run.steps);
    } else if (variant === "chain") {
      await env.BENCH_CHAIN.send({ ...run, step: 0 });
      countUsage("queue_operations");
    } else if (variant === "object") {
      await env.BENCH_RUN_OBJECT.get(env.BENCH_RUN_OBJECT.idFromName(`${run.trial}-${run.id}`)).create(run);
    } else return new Response("unknown variant", { status: 404 });
    return Response.json({ ok: true }, { status: 202 });
  }
  if (action === "results" && request.method === "GET") {
    const trial = url.searchParams.get("trial") ?? "";
    await ensureTable(env.DB);
    if (url.searchParams.get("count") === "1") {
      const row =
        variant === "runplane"
          ? await env.DB.prepare("SELECT COUNT(*) AS n FROM runs WHERE project_id = ? AND finished_at IS NOT NULL").bind(trial).first<{ n: number }>()
          : await env.DB.prepare("SELECT COUNT(*) AS n FROM bench_results WHERE variant = ? AND trial = ?").bind(variant, trial).first<{ n: number }>();
      return Response.json({ count: row?.n ?? 0 });
    }
    const rows =
      variant === "runplane"
        ? await env.DB.prepare("SELECT created_at, finished_at FROM runs WHERE project_id = ? AND finished_at IS NOT NULL").bind(trial).all()
        : await env.DB.prepare("SELECT created_at, finished_at FROM bench_results WHERE variant = ? AND trial = ?").bind(variant, trial).all();
    return Response.json({ finished: rows.results.map((r) => [r.created_at, r.finished_at]) });
  }
  return new Response("not found", { status: 404 });
}

export default {
  async fetch(request, env, ctx) {
    if (new URL(request.url).pathname.startsWith("/bench/")) {
      try {
        return await benchFetch(request, env as BenchEnv);
      } catch (err) {
        return Response.json({ error: String(err) }, { status: 500 });
      }
    }
    return runplane.fetch(request, env, ctx);
  },
  async queue(batch, env, ctx) {
    if (batch.queue === OBJECT_QUEUE) return consumeObjectRuns(batch as MessageBatch<BenchMessage>, env as BenchEnv);
    const variant = VARIANT_OF_QUEUE[batch.queue];
    if (variant) return consumeBench(batch as MessageBatch<BenchMessage>, env as BenchEnv, variant);
    return runplane.queue(batch, env, ctx);
  },
} satisfies ExportedHandler<Env>;
