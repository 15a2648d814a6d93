// Overview: the platform at a glance over the last 24 hours, by the hour.
import type { Schemas } from "@runplane/client";
import { chart, seconds } from "../chart";
import type { PageContext } from "../main";
import { card, code, emptyState, errorBox, h, hourRange, ms, nanoToUsd, percent, stat, usd } from "../ui";
import { liveDepthChart } from "./live";

export const OVERVIEW_HOURS = 24;

/** Settles each call on its own: one failing figure shows its error, the others still draw. */
async function settle<T>(work: Promise<T>): Promise<T | Error> {
  try {
    return await work;
  } catch (err) {
    return err as Error;
  }
}

export const tryItHint = () =>
  h("span", {}, "Submit one: ", code(`curl -X POST -H 'Authorization: Bearer <key>' -H 'Content-Type: application/json' ${location.origin}/v1/runs -d '{"projectId":"demo","runType":"hello"}'`), " — or run ", code("npm start"), ", which seeds demo runs.");

export async function overviewPage(ctx: PageContext) {
  const { client } = ctx.session;
  const query = { ...hourRange(OVERVIEW_HOURS), bucket: "hour" as const };
  // Every chart of the page spans the range asked for, its last bucket included.
  const span: [number, number] = [seconds(query.from), seconds(query.to) - 3600];
  const init = { params: { query }, signal: ctx.signal };
  const [runs, costs, queues, reliability] = await Promise.all([
    settle(client.GET("/v1/metrics/runs", init)),
    settle(client.GET("/v1/metrics/costs", init)),
    // By pool: the answer then carries each pool's open DLQ entries (dlqOpenByPool).
    settle(client.GET("/v1/metrics/queues", { params: { query: { ...query, groupBy: "pool" } }, signal: ctx.signal })),
    settle(client.GET("/v1/metrics/reliability", init)),
  ]);
  const tiles = h("div", { class: "stats", "aria-label": "Figures of the last 24 hours" });
  ctx.main.append(h("p", { class: "hint" }, `Last ${OVERVIEW_HOURS} hours, by the hour (${query.from} – ${query.to}).`), tiles);

  const runsCard = card("Runs per hour by status");
  if (runs instanceof Error) runsCard.append(errorBox(runs));
  else {
    const t = runs.totals;
    tiles.append(stat("Runs", String(t.runs), "runs"), stat("Success rate", percent(t.successRate), "success-rate"), stat("p95 duration", ms(t.durationMs.p95), "p95"));
    if (t.runs === 0) runsCard.append(emptyState("No runs yet in the last 24 hours.", tryItHint()));
    else runsCard.append(runsChart(runs, span));
  }

  const costCard = card("Cost trend");
  if (costs instanceof Error) costCard.append(errorBox(costs));
  else {
    tiles.append(stat("Cost", usd(costs.totals.totalUsd), "cost"), stat("Cost per run", usd(costs.totals.costPerRunUsd), "cost-per-run"));
    if (costs.series.length === 0) costCard.append(emptyState("No cost recorded in the last 24 hours.", "Costs appear a moment after a run's first step finishes."));
    else {
      const times = costs.series.map((s) => seconds(s.bucket));
      costCard.append(
        h(
          "div",
          { class: "chart-row" },
          chart({
            id: "cost-trend",
            title: "Cost per hour (USD)",
            times,
            series: [
              { label: "AI", values: costs.series.map((s) => nanoToUsd(s.aiNanoUsd)), color: "#8e44ad" },
              { label: "infrastructure", values: costs.series.map((s) => nanoToUsd(s.infraNanoUsd)), color: "#16a085" },
            ],
            format: (v) => `$${v.toFixed(v < 0.01 ? 6 : 2)}`,
            span,
          }).figure,
          h(
            "div",
            { class: "numbers" },
            stat("Total", usd(costs.totals.totalUsd)),
            stat("AI", usd(costs.totals.aiUsd)),
            stat("Infrastructure", usd(costs.totals.infraUsd)),
            stat("Change, first to last hour", costs.trend?.changePercent === null || costs.trend === null ? "n/a" : `${costs.trend.changePercent.toFixed(1)}%`),
          ),
        ),
      );
    }
  }

  const queueCard = card("Queues and the dead-letter queue");
  if (queues instanceof Error) queueCard.append(errorBox(queues));
  else {
    const dlqOpen = queues.dlqOpenByPool ? Object.values(queues.dlqOpenByPool).reduce((a, b) => a + b, 0) : null;
    tiles.append(stat("Queue depth (max)", queues.totals.depth?.max === null || queues.totals.depth === null ? "n/a" : String(queues.totals.depth.max), "depth"), stat("DLQ open", dlqOpen === null ? "n/a" : String(dlqOpen), "dlq"));
    queueCard.append(liveDepthChart(ctx));
    if (queues.series.some((s) => s.depth !== null)) {
      // Summed over the pools, bucket by bucket (each pool's highest sample in the hour).
      const rows = queues.series;
      const buckets = [...new Set(rows.map((s) => s.bucket))].sort();
      const sum = (bucket: string, pick: (s: (typeof rows)[number]) => number | null | undefined) =>
        rows.filter((s) => s.bucket === bucket).reduce((total, s) => total + (pick(s) ?? 0), 0);
      queueCard.append(
        chart({
          id: "queue-depth",
          title: "Queue depth and DLQ size per hour, all pools (sampled each minute)",
          times: buckets.map(seconds),
          series: [
            { label: "depth (max)", values: buckets.map((b) => sum(b, (s) => s.depth?.max)), color: "#2f6fdf" },
            { label: "DLQ size (max)", values: buckets.map((b) => sum(b, (s) => s.dlqSize?.max)), color: "#c0392b" },
          ],
          span,
        }).figure,
      );
    }
  }

  const reliabilityCard = card("Reliability");
  if (reliability instanceof Error) reliabilityCard.append(errorBox(reliability));
  else {
    const t = reliability.totals;
    tiles.append(stat("Uptime", percent(t.uptime.uptime), "uptime"));
    reliabilityCard.append(
      h(
        "div",
        { class: "stats" },
        stat("Uptime", `${percent(t.uptime.uptime)} (${t.uptime.okProbes}/${t.uptime.expectedProbes} minutes)`),
        stat("Run failure rate", percent(t.runFailureRate)),
        stat("Worker error rate", percent(t.workerErrorRate)),
        stat("Retry rate", percent(t.retryRate)),
        stat("API error rate", percent(t.apiErrorRate)),
        stat("Dead-lettered", String(t.deadLettered)),
      ),
    );
  }
  ctx.main.append(h("div", { class: "grid" }, runsCard, costCard, queueCard, reliabilityCard));
}

function runsChart(runs: Schemas["RunMetrics"], span: [number, number]): HTMLElement {
  const times = runs.series.map((s) => seconds(s.bucket));
  const { figure } = chart({
    id: "runs-per-hour",
    title: "Runs created per hour, by status",
    times,
    series: [
      { label: "succeeded", values: runs.series.map((s) => s.succeeded), color: "#2e8540" },
      { label: "failed", values: runs.series.map((s) => s.failed), color: "#c0392b" },
      { label: "cancelled", values: runs.series.map((s) => s.cancelled), color: "#7f8c8d" },
      { label: "unfinished", values: runs.series.map((s) => s.unfinished), color: "#2f6fdf" },
    ],
    span,
  });
  const t = runs.totals;
  return h(
    "div",
    { class: "chart-row" },
    figure,
    h(
      "div",
      { class: "numbers" },
      stat("Succeeded", String(t.succeeded)),
      stat("Failed", String(t.failed)),
      stat("Cancelled", String(t.cancelled)),
      stat("Unfinished", String(t.unfinished)),
      stat("p50 / p95", `${ms(t.durationMs.p50)} / ${ms(t.durationMs.p95)}`),
    ),
  );
}
