// The live series of the Overview: queue depth and in-flight work, polled every few seconds
// and drawn as they arrive (the metrics API's series are per minute at best).
import { chart } from "../chart";
import type { PageContext } from "../main";
import { callUndocumented } from "../session";
import { errorText, h } from "../ui";

export const LIVE_POLL_MS = 5_000;
const KEPT_POINTS = 120;

/** Sums a gauge's samples over its labels in Prometheus text ("name{pool="x"} 3"). */
function gauge(text: string, name: string): number {
  let sum = 0;
  for (const line of text.split("\n")) {
    if (line.startsWith(`${name}{`) || line.startsWith(`${name} `)) sum += Number(line.trim().split(/\s+/).pop()) || 0;
  }
  return sum;
}

/**
 * Current backlog and in-flight work: the admin reads GET /metrics (every pool's gauges), a
 * customer counts its own queued and running runs (GET /v1/runs; at most a page of each).
 */
async function sample(ctx: PageContext): Promise<{ depth: number; inFlight: number }> {
  if (ctx.session.role === "admin") {
    const response = await fetch("/metrics", { headers: { authorization: `Bearer ${ctx.session.apiKey}` }, signal: ctx.signal });
    if (!response.ok) await callUndocumented(ctx.session, "GET", "/metrics"); // throws the API's error
    const text = await response.text();
    return { depth: gauge(text, "runplane_queue_depth"), inFlight: gauge(text, "runplane_in_flight") };
  }
  const count = async (status: "queued" | "running") =>
    (await ctx.session.client.GET("/v1/runs", { params: { query: { status, limit: 500 } }, signal: ctx.signal })).runs.length;
  const [queued, running] = await Promise.all([count("queued"), count("running")]);
  return { depth: queued + running, inFlight: running };
}

export function liveDepthChart(ctx: PageContext): HTMLElement {
  const times: number[] = [];
  const depth: number[] = [];
  const inFlight: number[] = [];
  const depthNow = h("span", { class: "stat-value", "data-stat": "live-depth" }, "…");
  const inFlightNow = h("span", { class: "stat-value", "data-stat": "live-in-flight" }, "…");
  const problem = h("p", { class: "error", role: "alert" });
  const { figure, update } = chart({
    id: "live-depth",
    title: `Queue depth and in-flight work, live (every ${LIVE_POLL_MS / 1000} s)`,
    times,
    series: [
      { label: "depth", values: depth, color: "#2f6fdf" },
      { label: "in flight", values: inFlight, color: "#d9822b" },
    ],
    height: 160,
  });
  const tick = async () => {
    try {
      const now = await sample(ctx);
      times.push(Math.floor(Date.now() / 1000));
      depth.push(now.depth);
      inFlight.push(now.inFlight);
      if (times.length > KEPT_POINTS) [times, depth, inFlight].forEach((a) => a.shift());
      depthNow.textContent = String(now.depth);
      inFlightNow.textContent = String(now.inFlight);
      problem.textContent = "";
      update(times, [depth, inFlight]);
      figure.setAttribute("data-samples", String(times.length));
    } catch (err) {
      if (!ctx.signal.aborted) problem.textContent = errorText(err);
    }
  };
  void tick();
  const timer = setInterval(() => void tick(), LIVE_POLL_MS);
  ctx.signal.addEventListener("abort", () => clearInterval(timer));
  return h(
    "div",
    { class: "chart-row" },
    figure,
    h("div", { class: "numbers" }, h("div", { class: "stat" }, h("span", { class: "stat-label" }, "Depth now"), depthNow), h("div", { class: "stat" }, h("span", { class: "stat-label" }, "In flight now"), inFlightNow), problem),
  );
}
