// Runs: filter and list; a run's page shows its steps, every attempt (from the run's event
// log) with its outcome, failure type and duration, and what the run cost.
import type { operations, Run } from "@runplane/client";
import type { PageContext } from "../main";
import { card, emptyState, errorBox, field, h, ms, select, table, usd, when } from "../ui";
import { tryItHint } from "./overview";

type ListQuery = NonNullable<operations["listRuns"]["parameters"]["query"]>;
type RunEvent = operations["listRunEvents"]["responses"][200]["content"]["application/json"]["events"][number];
const STATUSES: NonNullable<ListQuery["status"]>[] = ["queued", "running", "waiting", "succeeded", "failed", "cancelled"];
const PAGE_SIZE = 50;

export async function runsPage(ctx: PageContext) {
  const params = new URLSearchParams(location.hash.split("?")[1] ?? "");
  const status = select("status", STATUSES, params.get("status") ?? "");
  const runType = h("input", { name: "runType", value: params.get("runType") ?? "" });
  const projectId = h("input", { name: "projectId", value: params.get("projectId") ?? "" });
  const customerId = h("input", { name: "customerId", value: params.get("customerId") ?? "" });
  const form = h(
    "form",
    {
      class: "filters",
      "aria-label": "Filter runs",
      onsubmit: (event: Event) => {
        event.preventDefault();
        const next = new URLSearchParams();
        for (const input of [status, runType, projectId, customerId]) if (input.value.trim()) next.set(input.name, input.value.trim());
        location.hash = `#/runs?${next}`;
      },
    },
    field("Status", status),
    field("Run type", runType),
    field("Project", projectId),
    ctx.session.role === "admin" ? field("Customer", customerId) : null,
    h("button", { type: "submit" }, "Filter"),
  );
  ctx.main.append(form);
  const query: ListQuery = { limit: PAGE_SIZE };
  for (const key of ["status", "runType", "projectId", "customerId"] as const) {
    const value = params.get(key);
    if (value) (query as Record<string, string>)[key] = value;
  }
  const list = h("div", { "data-list": "runs" });
  ctx.main.append(list);
  const showPage = async (cursor?: string) => {
    try {
      const page = await ctx.session.client.GET("/v1/runs", { params: { query: { ...query, ...(cursor ? { cursor } : {}) } }, signal: ctx.signal });
      if (page.runs.length === 0 && !cursor) {
        list.replaceChildren(params.size ? emptyState("No runs match these filters.", "Clear a filter, or widen it.") : emptyState("No runs yet.", tryItHint()));
        return;
      }
      const rows = page.runs.map((r) => [
        h("a", { href: `#/runs/${encodeURIComponent(r.id)}` }, r.id),
        h("span", { class: `status status-${r.status}` }, r.status),
        r.runType ?? "(inline)",
        r.customerId,
        r.projectId,
        r.pool,
        when(r.createdAt),
        ms(r.durationMs),
        r.failure ? `${r.failure.type}${r.failure.step ? ` at ${r.failure.step}` : ""}` : "",
      ]);
      const more = page.nextCursor ? h("button", { type: "button", onclick: () => void showPage(page.nextCursor!) }, "Next page") : null;
      list.replaceChildren(table("Runs, newest first", ["Run", "Status", "Run type", "Customer", "Project", "Pool", "Created", "Duration", "Failure"], rows, { "data-table": "runs" }), more ?? "");
    } catch (err) {
      list.replaceChildren(errorBox(err));
    }
  };
  await showPage();
}

interface Attempt {
  step: string;
  attempt: number | null;
  startedAt: string;
  finishedAt: string | null;
  outcome: string;
  failureType: string | null;
  message: string | null;
  durationMs: number | null;
}

/** The attempts of each step, read off the run's event log (step.started → step.succeeded/failed). */
function attemptsOf(events: RunEvent[]): Attempt[] {
  const attempts: Attempt[] = [];
  const open = new Map<string, Attempt>();
  for (const e of events) {
    if (!e.step) continue;
    const data = (e.data ?? {}) as Record<string, unknown>;
    if (e.type === "step.started") {
      const a: Attempt = { step: e.step, attempt: e.attempt, startedAt: e.at, finishedAt: null, outcome: "running", failureType: null, message: null, durationMs: null };
      attempts.push(a);
      open.set(e.step, a);
    } else if (["step.succeeded", "step.failed", "step.dead_lettered", "lease.expired"].includes(e.type)) {
      const a = open.get(e.step);
      if (!a) continue;
      a.finishedAt = e.at;
      a.outcome = e.type.replace(/^step\.|^lease\./, "");
      if (typeof data.type === "string") a.failureType = data.type;
      if (typeof data.message === "string") a.message = data.message;
      a.durationMs = typeof data.durationMs === "number" ? data.durationMs : Date.parse(e.at) - Date.parse(a.startedAt);
      open.delete(e.step);
    }
  }
  return attempts;
}

export async function runPage(ctx: PageContext, id: string) {
  const { client } = ctx.session;
  const path = { params: { path: { id } }, signal: ctx.signal };
  const [{ run }, events, cost] = await Promise.all([
    client.GET("/v1/runs/{id}", path),
    (async () => {
      const all: RunEvent[] = [];
      for await (const e of client.items("/v1/runs/{id}/events", { params: { path: { id } } })) all.push(e);
      return all;
    })(),
    client.GET("/v1/runs/{id}/cost", path).catch((err: unknown) => err as Error),
  ]);
  ctx.main.append(h("p", {}, h("a", { href: "#/runs" }, "← All runs")), summary(run));
  const attempts = attemptsOf(events);
  ctx.main.append(
    card(
      "Steps",
      table(
        `Steps of ${run.id}`,
        ["Step", "Type", "Status", "Attempts", "Started", "Finished", "Error"],
        run.steps.map((s) => [s.name, s.type, h("span", { class: `status status-${s.status}` }, s.status), s.attempts, when(s.startedAt), when(s.finishedAt), s.error ? `${s.error.type}: ${s.error.message}` : ""]),
        { "data-table": "steps" },
      ),
    ),
    card("Timeline: every attempt", timeline(run, attempts)),
    card("Event log", table("State transitions, oldest first", ["#", "At", "Event", "Step", "Attempt"], events.map((e) => [e.seq, when(e.at), e.type, e.step ?? "", e.attempt ?? ""]))),
  );
  const costCard = card("Cost");
  if (cost instanceof Error) costCard.append(errorBox(cost));
  else
    costCard.append(
      h("p", {}, `Total ${usd(cost.totalUsd)} (${cost.totalNanoUsd} nano-USD: AI ${cost.aiNanoUsd}, infrastructure ${cost.infraNanoUsd})${cost.settled ? "" : " — not settled yet"}`),
      table("Cost by meter", ["Meter", "Model", "Quantity", "nano-USD"], cost.lines.map((l) => [l.meter, l.model ?? "", String(l.quantity), String(l.nanoUsd)])),
    );
  ctx.main.append(costCard);
}

function summary(run: Run): HTMLElement {
  return h(
    "dl",
    { class: "summary", "data-run": run.id, "data-status": run.status },
    ...[
      ["Run", run.id],
      ["Status", run.status],
      ["Run type", run.runType ?? "(inline)"],
      ["Customer / project", `${run.customerId} / ${run.projectId}`],
      ["Pool / priority", `${run.pool} / ${run.priority}`],
      ["Created", when(run.createdAt)],
      ["Duration", ms(run.durationMs)],
      ["Cost", usd(run.cost.totalUsd)],
      ["Failure", run.failure ? `${run.failure.type} at ${run.failure.step ?? "?"}: ${run.failure.message}` : "none"],
    ].flatMap(([k, v]) => [h("dt", {}, k!), h("dd", {}, v!)]),
  );
}

/** Each attempt as a bar on the run's time line, with its outcome, failure type and duration beside it. */
function timeline(run: Run, attempts: Attempt[]): HTMLElement {
  if (attempts.length === 0) return emptyState("No attempt has started yet.", "The run is queued: a worker picks it up within seconds.");
  const start = Date.parse(run.startedAt ?? run.createdAt);
  const end = Math.max(start + 1, ...attempts.map((a) => Date.parse(a.finishedAt ?? new Date().toISOString())));
  const span = end - start;
  return h(
    "ol",
    { class: "timeline", "aria-label": "Attempts in order" },
    attempts.map((a) => {
      const left = ((Date.parse(a.startedAt) - start) / span) * 100;
      const width = Math.max(0.5, (((a.finishedAt ? Date.parse(a.finishedAt) : end) - Date.parse(a.startedAt)) / span) * 100);
      const bar = h("span", { class: `tl-bar outcome-${a.outcome}` });
      // Through the CSSOM: the dashboard's CSP allows no inline style attributes.
      bar.style.marginLeft = `${left.toFixed(2)}%`;
      bar.style.width = `${Math.min(width, 100 - left).toFixed(2)}%`;
      return h(
        "li",
        { "data-attempt": `${a.step}#${a.attempt ?? "?"}`, "data-outcome": a.outcome },
        h("span", { class: "tl-label" }, `${a.step} · attempt ${a.attempt ?? "?"}`),
        h("span", { class: "tl-track" }, bar),
        h("span", { class: "tl-info" }, `${a.outcome}${a.failureType ? ` (${a.failureType})` : ""} · ${ms(a.durationMs)}${a.message ? ` · ${a.message}` : ""}`),
      );
    }),
  );
}
