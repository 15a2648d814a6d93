// DLQ: filter the dead-lettered runs, inspect an entry's history, retry one or every match of
// the filter, or discard one. Admin only (the API's DLQ routes are).
import type { operations, Schemas } from "@runplane/client";
import type { PageContext } from "../main";
import { emptyState, errorBox, errorText, field, h, select, table, when } from "../ui";

type DlqQuery = NonNullable<operations["listDeadLetters"]["parameters"]["query"]>;
type FailureType = NonNullable<DlqQuery["failureType"]>;
type BulkFilter = NonNullable<operations["retryDeadLetters"]["requestBody"]["content"]["application/json"]["filter"]>;
const FAILURE_TYPES: FailureType[] = ["transient", "timeout", "worker_error", "permanent", "budget_exceeded", "cancelled"];
const STATES: NonNullable<DlqQuery["state"]>[] = ["open", "retried", "discarded"];

export async function dlqPage(ctx: PageContext) {
  const params = new URLSearchParams(location.hash.split("?")[1] ?? "");
  const inputs = {
    pool: h("input", { name: "pool", value: params.get("pool") ?? "" }),
    customerId: h("input", { name: "customerId", value: params.get("customerId") ?? "" }),
    runType: h("input", { name: "runType", value: params.get("runType") ?? "" }),
    failureType: select("failureType", FAILURE_TYPES, params.get("failureType") ?? ""),
    state: select("state", STATES, params.get("state") ?? "open", "any state"),
  };
  const filter: BulkFilter = {};
  for (const key of ["pool", "customerId", "runType"] as const) if (params.get(key)) filter[key] = params.get(key)!;
  if (params.get("failureType")) filter.failureType = params.get("failureType") as FailureType;
  const state = (params.has("state") ? params.get("state") || undefined : "open") as DlqQuery["state"];
  const status = h("p", { role: "status", class: "notice", "data-dlq-status": "" });
  const bulk = h(
    "button",
    {
      type: "button",
      onclick: async () => {
        const what = Object.keys(filter).length ? `every open entry matching ${JSON.stringify(filter)}` : "every open entry";
        if (!confirm(`Retry ${what}?`)) return;
        try {
          const result = await ctx.session.client.POST("/v1/dlq/retry", { body: { filter } });
          status.textContent = `Retried ${result.retried} of ${result.matched} matching entries${result.skipped.length ? `; skipped ${result.skipped.length}: ${result.skipped.map((s) => `${s.id} (${s.reason})`).join(", ")}` : ""}.`;
          await list();
        } catch (err) {
          status.textContent = errorText(err);
        }
      },
    },
    "Retry all matching",
  );
  ctx.main.append(
    h(
      "form",
      {
        class: "filters",
        "aria-label": "Filter dead-letter entries",
        onsubmit: (event: Event) => {
          event.preventDefault();
          const next = new URLSearchParams();
          for (const input of Object.values(inputs)) next.set(input.name, input.value.trim());
          location.hash = `#/dlq?${next}`;
        },
      },
      field("Pool", inputs.pool),
      field("Customer", inputs.customerId),
      field("Run type", inputs.runType),
      field("Failure type", inputs.failureType),
      field("State", inputs.state),
      h("button", { type: "submit" }, "Filter"),
      bulk,
    ),
    status,
  );
  const listing = h("div", { "data-list": "dlq" });
  const detail = h("div", { "data-detail": "dlq" });
  ctx.main.append(listing, detail);

  const act = async (entry: Schemas["DlqEntry"], action: "retry" | "discard") => {
    try {
      if (action === "retry") {
        const result = await ctx.session.client.POST("/v1/dlq/{id}/retry", { params: { path: { id: entry.id } } });
        status.replaceChildren(`Retried ${entry.id}: run `, h("a", { href: `#/runs/${encodeURIComponent(entry.runId)}` }, entry.runId), ` is ${result.runStatus}.`);
      } else {
        if (!confirm(`Discard ${entry.id}? The run stays failed.`)) return;
        await ctx.session.client.DELETE("/v1/dlq/{id}", { params: { path: { id: entry.id } } });
        status.textContent = `Discarded ${entry.id}.`;
      }
      await list();
    } catch (err) {
      status.textContent = errorText(err);
    }
  };

  const inspect = (entry: Schemas["DlqEntry"]) => {
    detail.replaceChildren(
      h("h2", { tabindex: "-1" }, `Entry ${entry.id}`),
      h("p", {}, `${entry.failure.type}: ${entry.failure.message} — step ${entry.step ?? "?"}, ${entry.attempts} attempts, dead since ${when(entry.deadAt)}; run `, h("a", { href: `#/runs/${encodeURIComponent(entry.runId)}` }, entry.runId), "."),
      entry.history.length
        ? table(
            "History: the attempts and earlier dead-letterings",
            ["#", "Record"],
            entry.history.map((record, i) => [i + 1, h("code", {}, JSON.stringify(record))]),
            { "data-table": "dlq-history" },
          )
        : h("p", {}, "No history recorded."),
    );
    (detail.firstElementChild as HTMLElement).focus();
  };

  const list = async () => {
    try {
      const { entries } = await ctx.session.client.GET("/v1/dlq", { params: { query: { ...filter, ...(state ? { state } : {}), limit: 100 } }, signal: ctx.signal });
      if (entries.length === 0) {
        listing.replaceChildren(emptyState("The dead-letter queue is empty for this filter.", "Runs land here when a step fails for good (a permanent failure or its retries exhausted); the run type \"broken\" of npm start does so on purpose."));
        return;
      }
      listing.replaceChildren(
        table(
          "Dead-letter entries, newest first",
          ["Entry", "Run", "Customer", "Run type", "Pool", "Step", "Failure", "Attempts", "Dead since", "State", "Actions"],
          entries.map((e) => [
            e.id,
            h("a", { href: `#/runs/${encodeURIComponent(e.runId)}` }, e.runId),
            e.customerId ?? "",
            e.runType ?? "(inline)",
            e.pool,
            e.step ?? "",
            `${e.failure.type}: ${e.failure.message}`,
            e.attempts,
            when(e.deadAt),
            e.state,
            h(
              "span",
              { class: "actions" },
              h("button", { type: "button", class: "secondary", "aria-label": `Inspect ${e.id}`, onclick: () => inspect(e) }, "Inspect"),
              e.state === "open" ? h("button", { type: "button", "aria-label": `Retry ${e.id}`, "data-action": "retry", onclick: () => void act(e, "retry") }, "Retry") : null,
              e.state === "open" ? h("button", { type: "button", class: "danger", "aria-label": `Discard ${e.id}`, onclick: () => void act(e, "discard") }, "Discard") : null,
            ),
          ]),
          { "data-table": "dlq" },
        ),
      );
    } catch (err) {
      listing.replaceChildren(errorBox(err));
    }
  };
  await list();
}
