// The operator dashboard: a sign-in form, then one page per hash route (#/overview, #/runs,
// #/runs/<id>, #/pools, #/costs, #/dlq, #/alerts). Every figure comes from the JSON API of the
// same Worker, through the project's client.
import { destroyCharts } from "./chart";
import { forgetKey, signIn, storedKey, type Session } from "./session";
import { errorBox, errorText, h } from "./ui";
import { overviewPage } from "./pages/overview";
import { runsPage, runPage } from "./pages/runs";
import { poolsPage } from "./pages/pools";
import { costsPage } from "./pages/costs";
import { dlqPage } from "./pages/dlq";
import { alertsPage } from "./pages/alerts";

export interface PageContext {
  session: Session;
  /** Where the page draws itself. */
  main: HTMLElement;
  /** Set when the page is left: pollers stop. */
  signal: AbortSignal;
  /** Re-renders the current route (after a retry, a save…). */
  refresh: () => void;
}

type Page = (ctx: PageContext, param?: string) => Promise<void>;

const PAGES: { path: string; title: string; render: Page; adminOnly?: boolean }[] = [
  { path: "overview", title: "Overview", render: overviewPage },
  { path: "runs", title: "Runs", render: runsPage },
  { path: "pools", title: "Pools", render: poolsPage, adminOnly: true },
  { path: "costs", title: "Costs", render: costsPage },
  { path: "dlq", title: "DLQ", render: dlqPage, adminOnly: true },
  { path: "alerts", title: "Alerts", render: alertsPage },
];

const root = document.getElementById("app")!;
let session: Session | null = null;
let leave: AbortController | null = null;

function signInForm(message?: string) {
  const key = h("input", { id: "api-key", name: "apiKey", type: "password", autocomplete: "current-password", required: true, "aria-describedby": "api-key-help" });
  const status = h("p", { class: "error", role: "alert", id: "sign-in-error" }, message ?? "");
  const button = h("button", { type: "submit" }, "Sign in");
  const form = h(
    "form",
    {
      class: "sign-in",
      "aria-label": "Sign in",
      onsubmit: async (event: Event) => {
        event.preventDefault();
        button.disabled = true;
        status.textContent = "";
        try {
          session = await signIn(key.value.trim());
          if (!location.hash || location.hash === "#/") location.hash = "#/overview";
          render();
        } catch (err) {
          status.textContent = errorText(err);
        } finally {
          button.disabled = false;
        }
      },
    },
    h("h1", {}, "Runplane dashboard"),
    h("label", { for: "api-key" }, "API key"),
    key,
    h("p", { id: "api-key-help", class: "hint" }, "The admin key shows the whole platform; a customer's rp_ key shows that customer's slice. It is kept for this tab only."),
    button,
    status,
  );
  root.replaceChildren(h("main", { id: "main" }, form));
  key.focus();
}

function shell(current: string): HTMLElement {
  const s = session!;
  const nav = h(
    "nav",
    { "aria-label": "Pages" },
    h(
      "ul",
      {},
      PAGES.filter((p) => !p.adminOnly || s.role === "admin").map((p) =>
        h("li", {}, h("a", { href: `#/${p.path}`, "aria-current": p.path === current ? "page" : false }, p.title)),
      ),
    ),
  );
  const who = s.role === "admin" ? "admin key: every customer" : `customer key${s.customerId ? `: ${s.customerId}` : ""}`;
  const header = h(
    "header",
    {},
    h("a", { class: "brand", href: "#/overview" }, "Runplane"),
    nav,
    h("span", { class: "who", "data-role": s.role }, who),
    h("a", { href: "/docs/", class: "docs-link" }, "API docs"),
    h(
      "button",
      {
        type: "button",
        class: "secondary",
        onclick: () => {
          forgetKey();
          session = null;
          leave?.abort();
          destroyCharts();
          signInForm();
        },
      },
      "Sign out",
    ),
  );
  const main = h("main", { id: "main", tabindex: "-1" });
  root.replaceChildren(h("a", { href: "#main", class: "skip" }, "Skip to content"), header, main);
  return main;
}

async function render() {
  if (!session) return signInForm();
  leave?.abort();
  destroyCharts();
  leave = new AbortController();
  const [path = "overview", param] = location.hash.replace(/^#\/?/, "").split("/");
  const page = PAGES.find((p) => p.path === path && (!p.adminOnly || session!.role === "admin")) ?? PAGES[0]!;
  const main = shell(page.path);
  document.title = `${page.title} · Runplane`;
  const ctx: PageContext = { session, main, signal: leave.signal, refresh: () => void render() };
  main.append(h("h1", {}, param && page.path === "runs" ? "Run" : page.title));
  main.setAttribute("aria-busy", "true");
  try {
    await (page.path === "runs" && param ? runPage(ctx, decodeURIComponent(param)) : page.render(ctx));
  } catch (err) {
    main.append(errorBox(err));
  } finally {
    main.setAttribute("aria-busy", "false");
    main.setAttribute("data-loaded", page.path);
  }
}

window.addEventListener("hashchange", () => void render());

async function start() {
  const key = storedKey();
  if (!key) return signInForm();
  try {
    session = await signIn(key);
    render();
  } catch (err) {
    forgetKey();
    signInForm(errorText(err));
  }
}
void start();
