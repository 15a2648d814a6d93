// Costs: spend over time per customer, model and run type; each customer's profitability; budgets
// with their thresholds and the amounts held for running steps.
import type { operations, Schemas } from "@runplane/client";
import { chart, seconds } from "../chart";
import type { PageContext } from "../main";
import { card, emptyState, errorBox, field, h, hourRange, nanoToUsd, percent, select, table, usd } from "../ui";

type CostQuery = NonNullable<operations["getCostMetrics"]["parameters"]["query"]>;
const RANGES = { "24h": { hours: 24, bucket: "hour" }, "7d": { hours: 24 * 7, bucket: "day" }, "30d": { hours: 24 * 30, bucket: "day" } } as const;
const GROUPS = [
  ["customer", "Cost per customer"],
  ["model", "Cost per model (AI tokens; '(infra)' is infrastructure)"],
  ["runType", "Cost per run type"],
] as const;
const PALETTE = ["#2f6fdf", "#d9822b", "#2e8540", "#8e44ad", "#c0392b", "#16a085"];
/** More keys than this on one chart are summed into "other": a chart of 40 lines reads as none. */
const MAX_KEYS = 5;

export async function costsPage(ctx: PageContext) {
  const params = new URLSearchParams(location.hash.split("?")[1] ?? "");
  const rangeName = (params.get("range") ?? "24h") as keyof typeof RANGES;
  const range = RANGES[rangeName] ?? RANGES["24h"];
  const picker = select("range", Object.keys(RANGES), rangeName, "24h");
  picker.addEventListener("change", () => (location.hash = `#/costs?range=${picker.value || "24h"}`));
  ctx.main.append(h("form", { class: "filters", "aria-label": "Range", onsubmit: (e: Event) => e.preventDefault() }, field("Range", picker)));
  const base: CostQuery = { ...hourRange(range.hours), bucket: range.bucket };
  const { client } = ctx.session;
  const sections = await Promise.all(
    GROUPS.map(async ([groupBy, title]) => {
      const section = card(title);
      try {
        const report = await client.GET("/v1/metrics/costs", { params: { query: { ...base, groupBy } }, signal: ctx.signal });
        section.append(groupChart(`cost-by-${groupBy}`, title, report));
      } catch (err) {
        section.append(errorBox(err));
      }
      return section;
    }),
  );
  // Profitability (revenue against cost, the fixed cost shared out) is the operator's figure: the API keeps it admin-only.
  ctx.main.append(h("div", { class: "grid" }, sections), ctx.session.role === "admin" ? await profitability(ctx) : "", await budgets(ctx));
}

function groupChart(id: string, title: string, report: Schemas["CostMetrics"]): HTMLElement {
  if (report.series.length === 0) return emptyState("No cost in this range.", "Costs appear a moment after a run's first step finishes; widen the range or submit a run.");
  const byKey = new Map<string, Map<string, number>>();
  const totals = new Map<string, bigint>();
  const usdByKey = new Map<string, string>();
  for (const row of report.series) {
    const key = row.key ?? "all";
    const points = byKey.get(key) ?? new Map<string, number>();
    points.set(row.bucket, (points.get(row.bucket) ?? 0) + nanoToUsd(row.totalNanoUsd));
    byKey.set(key, points);
    totals.set(key, (totals.get(key) ?? 0n) + BigInt(row.totalNanoUsd));
  }
  const ranked = [...totals.entries()].sort((a, b) => (b[1] > a[1] ? 1 : b[1] < a[1] ? -1 : 0));
  for (const [key, nano] of ranked) usdByKey.set(key, (Number(nano) / 1e9).toFixed(9).replace(/0+$/, "").replace(/\.$/, ""));
  const shown = ranked.slice(0, MAX_KEYS).map(([k]) => k);
  const buckets = [...new Set(report.series.map((r) => r.bucket))].sort();
  const series = shown.map((key, i) => ({ label: key, color: PALETTE[i % PALETTE.length]!, values: buckets.map((b) => byKey.get(key)?.get(b) ?? 0) }));
  if (ranked.length > MAX_KEYS) {
    const rest = ranked.slice(MAX_KEYS).map(([k]) => k);
    series.push({ label: "other", color: "#7f8c8d", values: buckets.map((b) => rest.reduce((sum, k) => sum + (byKey.get(k)?.get(b) ?? 0), 0)) });
  }
  const { figure } = chart({ id, title: `${title}, USD per ${report.bucket}`, times: buckets.map(seconds), series, format: (v) => `$${v.toFixed(v < 0.01 ? 6 : 2)}` });
  return h(
    "div",
    { class: "chart-row" },
    figure,
    h("div", { class: "numbers" }, table("Total in range", ["Key", "USD"], ranked.map(([k]) => [k, usd(usdByKey.get(k)!)]), { "data-table": id })),
  );
}

const thisMonth = () => new Date().toISOString().slice(0, 7);

async function customerIds(ctx: PageContext): Promise<string[]> {
  if (ctx.session.role === "customer") return ctx.session.customerId ? [ctx.session.customerId] : [];
  const { customers } = await ctx.session.client.GET("/v1/customers", { params: { query: { limit: 50 } }, signal: ctx.signal });
  return customers.map((c) => c.id);
}

async function profitability(ctx: PageContext): Promise<HTMLElement> {
  const section = card(`Profitability, ${thisMonth()} (month to date)`);
  try {
    const ids = await customerIds(ctx);
    if (ids.length === 0) return section.appendChild(emptyState("No customers yet.", "Create one with POST /v1/customers (admin key).")), section;
    const reports = await Promise.all(ids.map((id) => ctx.session.client.GET("/v1/customers/{id}/profitability", { params: { path: { id }, query: { month: thisMonth() } }, signal: ctx.signal })));
    section.append(
      table(
        "Revenue (plan fee + per-run price) − direct cost − allocated fixed cost",
        ["Customer", "Runs", "Revenue", "Direct cost", "Fixed cost share", "Margin"],
        reports.map((p) => [p.customerId, p.runs, usd(p.revenueUsd), usd(p.directCostUsd), usd(p.allocatedFixedCostUsd), h("span", { class: p.marginUsd.startsWith("-") ? "negative" : "" }, usd(p.marginUsd))]),
        { "data-table": "profitability" },
      ),
    );
  } catch (err) {
    section.append(errorBox(err));
  }
  return section;
}

async function budgets(ctx: PageContext): Promise<HTMLElement> {
  const section = card("Budgets, thresholds and holds");
  try {
    const ids = await customerIds(ctx);
    const customers = await Promise.all(ids.map((id) => ctx.session.client.GET("/v1/customers/{id}", { params: { path: { id } }, signal: ctx.signal })));
    if (customers.length === 0) return section.appendChild(emptyState("No customers yet.", "Budgets are set per customer: PUT /v1/customers/:id/budget.")), section;
    section.append(
      table(
        "Month-to-date spend against each budget",
        ["Customer", "Limit", "Soft thresholds", "Spent", "Held for running steps", "Remaining", "Used", "State"],
        customers.map(({ customer: c }) => {
          const used = c.budget ? Number(c.spend.monthToDateNanoUsd) / Number(c.budget.monthlyLimitNanoUsd) : null;
          const meter = h("meter", { min: 0, max: 1, value: used ?? 0, low: c.budget?.softThresholds[0] ?? 0.8, high: c.budget?.softThresholds.at(-1) ?? 0.9, optimum: 0, "aria-label": `${c.id} budget used` });
          return [
            c.id,
            c.budget ? usd(c.budget.monthlyLimitUsd) : "no budget",
            c.budget ? c.budget.softThresholds.map((t) => percent(t)).join(", ") : "—",
            usd(c.spend.monthToDateUsd),
            usd(c.spend.heldUsd),
            usd(c.spend.remainingUsd),
            c.budget ? h("span", {}, meter, ` ${percent(used)}`) : "—",
            h("span", { class: `budget budget-${c.spend.budgetState}` }, c.spend.budgetState),
          ];
        }),
        { "data-table": "budgets" },
      ),
    );
  } catch (err) {
    section.append(errorBox(err));
  }
  return section;
}
