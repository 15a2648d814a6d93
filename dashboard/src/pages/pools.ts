// Pools: each pool's depth, in-flight work and desired concurrency now and over time, its
// scaling decisions, and an editor for its scaling policy. Admin only.
import { type Schemas } from "@runplane/client";
import { chart, seconds } from "../chart";
import type { PageContext } from "../main";
import { card, emptyState, errorBox, errorText, field, h, percent, stat, table, when } from "../ui";

type Decision = Schemas["PoolDecision"];
type Pool = Schemas["Pool"];
type PolicyInput = Schemas["PoolPolicyInput"];

export const POOL_POLL_MS = 5_000;

export async function poolsPage(ctx: PageContext) {
  let pools: Pool[];
  try {
    ({ pools } = await ctx.session.client.GET("/v1/pools", { signal: ctx.signal }));
  } catch (err) {
    ctx.main.append(errorBox(err));
    return;
  }
  if (pools.length === 0) {
    ctx.main.append(emptyState("No pools configured.", "Pools are declared in the Worker's configuration (src/config/pools.ts and wrangler.toml)."));
    return;
  }
  for (const pool of pools) ctx.main.append(await poolCard(ctx, pool));
}

async function poolCard(ctx: PageContext, initial: Pool): Promise<HTMLElement> {
  const name = initial.name;
  const section = card(`Pool ${name}`);
  section.setAttribute("data-pool", name);
  const figures = h("div", { class: "stats" });
  const showFigures = (p: Pool) =>
    figures.replaceChildren(
      stat("Depth", String(p.depth), `pool-${name}-depth`),
      stat("In flight", String(p.inFlight), `pool-${name}-in-flight`),
      stat("Desired concurrency", String(p.desiredConcurrency), `pool-${name}-desired`),
      stat("Utilization", percent(p.utilization)),
      stat("Processing rate", `${p.processingRate.toFixed(2)} steps/s`),
    );
  showFigures(initial);
  section.append(figures);

  // The last hour from the series endpoint, then live: the pool polled every few seconds.
  const times: number[] = [];
  const depth: number[] = [];
  const inFlight: number[] = [];
  const desired: number[] = [];
  let decisions: Decision[] = initial.recentDecisions;
  try {
    const series = await ctx.session.client.GET("/v1/pools/{name}/series", { params: { path: { name } }, signal: ctx.signal });
    for (const p of series.points) {
      times.push(seconds(p.at));
      depth.push(p.depth);
      inFlight.push(p.inFlight);
      desired.push(p.desired);
    }
    if (series.decisions.length) decisions = series.decisions;
  } catch (err) {
    section.append(errorBox(err));
  }
  // An active controller samples every few seconds, so an hour without samples is an hour idle
  // at its minimum (an idle pool runs no timer): drawn as such, up to its state now.
  if (times.length === 0) {
    const now = Math.floor(Date.now() / 1000);
    times.push(now - 3600, now);
    depth.push(0, initial.depth);
    inFlight.push(0, initial.inFlight);
    desired.push(Number(initial.policy.minConcurrency), initial.desiredConcurrency);
  }
  const { figure, update } = chart({
    id: `pool-${name}`,
    title: `Depth, in flight and desired concurrency of ${name} (last hour, then live every ${POOL_POLL_MS / 1000} s)`,
    times,
    series: [
      { label: "depth", values: depth, color: "#2f6fdf" },
      { label: "in flight", values: inFlight, color: "#d9822b" },
      { label: "desired concurrency", values: desired, color: "#2e8540" },
    ],
  });
  const decisionsBox = h("div", {});
  const showDecisions = (list: Decision[]) =>
    decisionsBox.replaceChildren(
      list.length
        ? table(`Scaling decisions of ${name}, newest first`, ["At", "From", "To", "Reason"], [...list].sort((a, b) => b.at.localeCompare(a.at)).slice(0, 20).map((d) => [when(d.at), d.from, d.to, d.reason]), { "data-table": `decisions-${name}` })
        : emptyState("No scaling decisions yet.", "The controller decides when work arrives; an idle pool decides nothing (and runs no timer)."),
    );
  showDecisions(decisions);
  section.append(figure, h("h3", {}, "Scaling decisions"), decisionsBox, policyEditor(ctx, initial, showFigures));

  const problem = h("p", { class: "error", role: "alert" });
  section.append(problem);
  const timer = setInterval(async () => {
    try {
      const { pool } = await ctx.session.client.GET("/v1/pools/{name}", { params: { path: { name } }, signal: ctx.signal });
      times.push(Math.floor(Date.now() / 1000));
      depth.push(pool.depth);
      inFlight.push(pool.inFlight);
      desired.push(pool.desiredConcurrency);
      update(times, [depth, inFlight, desired]);
      figure.setAttribute("data-samples", String(times.length));
      showFigures(pool);
      if (pool.recentDecisions.length) showDecisions(pool.recentDecisions);
      problem.textContent = "";
    } catch (err) {
      if (!ctx.signal.aborted) problem.textContent = errorText(err);
    }
  }, POOL_POLL_MS);
  ctx.signal.addEventListener("abort", () => clearInterval(timer));
  return section;
}

/**
 * The policy as the API returns it, one field per knob (numbers as number inputs, the rest as
 * text), sent back whole with PUT: the GET's policy is a valid body, so no knob list is kept here.
 */
function policyEditor(ctx: PageContext, pool: Pool, onSaved: (p: Pool) => void): HTMLElement {
  const policy = pool.policy as Record<string, unknown>;
  const inputs = Object.entries(policy).map(([key, value]) => {
    const input = h("input", { name: key, type: typeof value === "number" ? "number" : "text", step: "any", value: typeof value === "object" ? JSON.stringify(value) : String(value) });
    return { key, kind: typeof value, input };
  });
  const status = h("p", { role: "status", "data-policy-status": pool.name });
  const form = h(
    "form",
    {
      class: "policy",
      "aria-label": `Scaling policy of ${pool.name}`,
      onsubmit: async (event: Event) => {
        event.preventDefault();
        const body: Record<string, unknown> = {};
        for (const { key, kind, input } of inputs) body[key] = kind === "number" ? Number(input.value) : kind === "object" ? JSON.parse(input.value) : input.value;
        status.textContent = "Saving…";
        try {
          const { pool: saved } = await ctx.session.client.PUT("/v1/pools/{name}/policy", { params: { path: { name: pool.name } }, body: body as PolicyInput });
          onSaved(saved);
          status.textContent = `Saved at ${when(new Date().toISOString())}.`;
        } catch (err) {
          status.textContent = errorText(err);
        }
      },
    },
    h("h3", {}, "Scaling policy"),
    h("div", { class: "policy-fields" }, inputs.map(({ key, input }) => field(key, input))),
    h("button", { type: "submit" }, "Save policy"),
    status,
  );
  return form;
}
