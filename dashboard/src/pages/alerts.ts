// Alerts: dead letters, budget thresholds, backlog and degradations, newest first (a customer
// key: its own).
import type { PageContext } from "../main";
import { emptyState, errorBox, field, h, select, table, when } from "../ui";

export async function alertsPage(ctx: PageContext) {
  const params = new URLSearchParams(location.hash.split("?")[1] ?? "");
  const state = select("state", ["firing", "resolved"], params.get("state") ?? "", "any");
  const kind = h("input", { name: "kind", value: params.get("kind") ?? "", placeholder: "e.g. dlq_entry" });
  ctx.main.append(
    h(
      "form",
      {
        class: "filters",
        "aria-label": "Filter alerts",
        onsubmit: (e: Event) => {
          e.preventDefault();
          location.hash = `#/alerts?${new URLSearchParams({ kind: kind.value.trim(), state: state.value })}`;
        },
      },
      field("Kind", kind),
      field("State (degradations)", state),
      h("button", { type: "submit" }, "Filter"),
    ),
  );
  try {
    const query = { limit: 200, ...(params.get("kind") ? { kind: params.get("kind")! } : {}), ...(params.get("state") ? { state: params.get("state") as "firing" | "resolved" } : {}) };
    const { alerts } = await ctx.session.client.GET("/v1/alerts", { params: { query }, signal: ctx.signal });
    if (alerts.length === 0) {
      ctx.main.append(emptyState("No alerts.", "Alerts are recorded when a run is dead-lettered, a budget threshold is crossed, or a figure degrades against its baseline."));
      return;
    }
    ctx.main.append(
      table(
        "Alerts, newest first",
        ["When", "Severity", "Kind", "Customer", "Message", "State", "Delivery"],
        alerts.map((a) => [
          when(a.createdAt),
          h("span", { class: `severity severity-${a.severity}` }, a.severity),
          a.kind,
          a.customerId ?? "",
          a.runId ? h("span", {}, `${a.message} — `, h("a", { href: `#/runs/${encodeURIComponent(a.runId)}` }, a.runId)) : a.message,
          a.state ?? "",
          `${a.delivery.status}${a.delivery.lastError ? ` (${a.delivery.lastError})` : ""}`,
        ]),
        { "data-table": "alerts" },
      ),
    );
  } catch (err) {
    ctx.main.append(errorBox(err));
  }
}
