// The operator dashboard in a real browser: Debian's Chromium (headless, driven by
// playwright-core) against a seeded local runtime. Every request the page makes must stay on
// the runtime's origin, no console error may appear, and each page leaves a screenshot in
// test-results/dashboard/.
import { existsSync, mkdirSync, readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { chromium, type Browser, type BrowserContext, type Page } from "playwright-core";
// @ts-expect-error plain ESM without types
import { PAGE_WEIGHT_BUDGET_BYTES, pageWeight } from "../../dashboard/build.mjs";
import { ADMIN_KEY, startSeededRuntime, type Seeded } from "./runtime.ts";

const CHROMIUM = "/usr/bin/chromium";
const SHOTS = path.join(import.meta.dirname, "..", "..", "test-results", "dashboard");

let rt: Seeded;
let browser: Browser;

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: apt-get install -y chromium (.ci/run does)`);
  if (!existsSync(path.join(import.meta.dirname, "..", "..", "dashboard", "dist", "dashboard", "index.html"))) throw new Error("dashboard/dist is not built: npm run build:dashboard");
  mkdirSync(SHOTS, { recursive: true });
  [rt, browser] = await Promise.all([startSeededRuntime(), chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox"] })]);
});

afterAll(async () => {
  await browser?.close();
  await rt?.stop();
});

/** A console error the test expects: a failed answer of the API at `url` with `status`, which the page then shows. */
interface ExpectedFailure {
  status: number;
  path: string;
}

interface Watched {
  context: BrowserContext;
  page: Page;
  /** Requests to another origin (refused), console errors and page errors (uncaught exceptions). */
  problems: () => string[];
  /** The URLs the page asked for. */
  requests: string[];
}

/**
 * A fresh browser context (its own sessionStorage) whose page may reach only the runtime's
 * origin: any other request is aborted and reported, as is every console or page error
 * beyond `expected` (the API's own refusals that the page displays).
 */
async function open(viewport = { width: 1280, height: 900 }, expected: ExpectedFailure[] = []): Promise<Watched> {
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  const problems: string[] = [];
  const requests: string[] = [];
  const origin = new URL(rt.base).origin;
  await context.route("**/*", (route) => {
    const url = route.request().url();
    if (new URL(url).origin !== origin) {
      problems.push(`request to another origin: ${url}`);
      return route.abort("blockedbyclient");
    }
    requests.push(url);
    return route.continue();
  });
  page.on("console", (message) => {
    if (message.type() !== "error") return;
    const at = message.location().url;
    // Chromium logs every failed fetch ("Failed to load resource: … status of 403"): allowed only
    // for the refusals this test expects, by path and status.
    const allowed = expected.some((e) => at && new URL(at).pathname === e.path && message.text().includes(`status of ${e.status}`));
    if (!allowed) problems.push(`console error: ${message.text()} (${at})`);
  });
  page.on("pageerror", (err) => problems.push(`page error: ${err.message}`));
  page.on("dialog", (dialog) => void dialog.accept());
  return { context, page, problems: () => problems, requests };
}

/** Signs in through the form with the keyboard: the key field has focus, Enter submits. */
async function signIn(page: Page, key: string) {
  await page.goto(`${rt.base}/dashboard/`);
  const field = page.getByLabel("API key");
  await expect(field.getAttribute("type")).resolves.toBe("password");
  await expect.poll(() => page.evaluate(() => document.activeElement?.id)).toBe("api-key");
  await page.keyboard.type(key);
  await page.keyboard.press("Enter");
  await page.locator('main[data-loaded="overview"]').waitFor();
}

async function visit(page: Page, route: string, loaded: string) {
  await page.evaluate((hash) => (location.hash = hash), route);
  await page.locator(`main[data-loaded="${loaded}"][aria-busy="false"]`).waitFor();
}

const shot = (page: Page, name: string) => page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: true });

/** Pixels of the chart's canvas in a series' colour: the series was drawn, not just the axes. */
async function seriesPixels(page: Page, chartId: string, rgb: [number, number, number]): Promise<number> {
  await page.locator(`figure[data-chart="${chartId}"][data-drawn="true"]`).waitFor();
  return page.evaluate(
    ([id, [r, g, b]]) => {
      const canvas = document.querySelector<HTMLCanvasElement>(`figure[data-chart="${id}"] canvas`)!;
      const { data } = canvas.getContext("2d")!.getImageData(0, 0, canvas.width, canvas.height);
      let hits = 0;
      for (let i = 0; i < data.length; i += 4) if (Math.abs(data[i]! - r) < 12 && Math.abs(data[i + 1]! - g) < 12 && Math.abs(data[i + 2]! - b) < 12 && data[i + 3]! > 200) hits++;
      return hits;
    },
    [chartId, rgb] as const,
  );
}

const statText = (page: Page, name: string) => page.locator(`[data-stat="${name}"]`).first().innerText();
const pct = (x: number | null) => (x === null ? "n/a" : `${(x * 100).toFixed(1)}%`);

describe("the dashboard, served by the Worker", () => {
  it("serves /dashboard/ and /docs/ as static assets with a self-only CSP, while the API's paths reach the Worker", async () => {
    const redirect = await fetch(`${rt.base}/dashboard`, { redirect: "manual" });
    expect([307, 308]).toContain(redirect.status);
    expect(redirect.headers.get("location")).toMatch(/\/dashboard\/$/);
    const html = await fetch(`${rt.base}/dashboard/`);
    expect(html.status).toBe(200);
    expect(html.headers.get("content-type")).toMatch(/text\/html/);
    expect(html.headers.get("content-security-policy")).toMatch(/default-src 'self'; script-src 'self'; style-src 'self';/);
    expect((await fetch(`${rt.base}/docs/`)).status).toBe(200);
    for (const [p, status] of [["/v1/runs", 401], ["/metrics", 401], ["/health", 200], ["/health/ready", 200], ["/openapi.json", 200]] as const) {
      const res = await fetch(`${rt.base}${p}`);
      expect(res.status, p).toBe(status);
      expect(res.headers.get("x-request-id"), `${p} answered by the Worker`).toBeTruthy();
    }
  });

  it(`keeps the page's JS and CSS within its budget (${PAGE_WEIGHT_BUDGET_BYTES / 1024} KB gzipped)`, () => {
    const weight = pageWeight();
    expect(weight.scriptsAndStylesGzipBytes).toBeLessThanOrEqual(PAGE_WEIGHT_BUDGET_BYTES);
  });

  it("imports nothing from src/: the dashboard reaches the platform only over HTTP, through the client", () => {
    const dir = path.join(import.meta.dirname, "..", "..", "dashboard", "src");
    const files = readdirSync(dir, { recursive: true, encoding: "utf8" }).filter((f) => f.endsWith(".ts"));
    expect(files.length).toBeGreaterThan(5);
    for (const file of files) {
      const imports = [...readFileSync(path.join(dir, file), "utf8").matchAll(/from\s+"([^"]+)"/g)].map((m) => m[1]!);
      for (const spec of imports) expect(spec, `${file} imports ${spec}`).toMatch(/^(\.\/|\.\.\/(?!\.\.)|@runplane\/client$|uplot$)/);
    }
  });

  it("shows the API's message for a wrong key", async () => {
    const w = await open(undefined, [{ path: "/v1/customers", status: 401 }]);
    await w.page.goto(`${rt.base}/dashboard/`);
    await w.page.getByLabel("API key").fill("not-a-key");
    await w.page.getByRole("button", { name: "Sign in" }).click();
    const apiError = await fetch(`${rt.base}/v1/customers`, { headers: { authorization: "Bearer not-a-key" } }).then((r) => r.json());
    await expect.poll(() => w.page.locator("#sign-in-error").innerText()).toContain(apiError.error.message);
    expect(w.problems()).toEqual([]);
    await w.context.close();
  });

  it("signs the admin in and shows every page: charts drawn, figures as the API gives them, nothing from another origin", async () => {
    const poolsAnswer = await fetch(`${rt.base}/v1/pools`, { headers: { authorization: `Bearer ${ADMIN_KEY}` } });
    const w = await open(undefined, poolsAnswer.status === 404 ? [{ path: "/v1/pools", status: 404 }] : []);
    const { page } = w;
    await signIn(page, ADMIN_KEY);
    expect(await page.evaluate(() => sessionStorage.getItem("runplane.apiKey"))).toBe(ADMIN_KEY);

    // Overview: the figures beside the charts are the API's, for the very query the page made.
    const runsUrl = w.requests.find((u) => new URL(u).pathname === "/v1/metrics/runs")!;
    const query = new URL(runsUrl).searchParams;
    const get = async (p: string) => (await fetch(`${rt.base}${p}?${query}`, { headers: { authorization: `Bearer ${ADMIN_KEY}` } })).json();
    const [runs, costs, reliability] = await Promise.all([get("/v1/metrics/runs"), get("/v1/metrics/costs"), get("/v1/metrics/reliability")]);
    expect(runs.totals.runs).toBeGreaterThanOrEqual(rt.runs.acme.length + rt.runs.globex.length);
    expect(await statText(page, "runs")).toBe(String(runs.totals.runs));
    expect(await statText(page, "success-rate")).toBe(pct(runs.totals.successRate));
    expect(await statText(page, "p95")).toMatch(new RegExp(`^${Math.round(runs.totals.durationMs.p95)} ms$|s$`));
    expect(await statText(page, "cost")).toBe(`$${costs.totals.totalUsd}`);
    expect(await statText(page, "uptime")).toBe(pct(reliability.totals.uptime.uptime));
    const openEntries = (await rt.admin.GET("/v1/dlq", { params: { query: { state: "open" } } })).entries.length;
    expect(await statText(page, "dlq")).toBe(String(openEntries));
    expect(await seriesPixels(page, "runs-per-hour", [0x2e, 0x85, 0x40])).toBeGreaterThan(0);
    expect(await seriesPixels(page, "cost-trend", [0x8e, 0x44, 0xad])).toBeGreaterThan(0);
    // The live series polls: a second sample arrives.
    await page.locator('figure[data-chart="live-depth"][data-samples="2"]').waitFor({ timeout: 15_000 });
    await shot(page, "overview");

    await visit(page, "#/runs", "runs");
    const listed = await page.locator('table[data-table="runs"] tbody tr').count();
    expect(listed).toBeGreaterThanOrEqual(rt.runs.acme.length + rt.runs.globex.length);
    await shot(page, "runs");
    // A run's timeline: the flaky run's first attempt failed (transient), its second succeeded.
    const flaky = rt.runs.acme.at(-1)!;
    await page.locator(`a[href="#/runs/${flaky}"]`).click();
    await page.locator('main[data-loaded="runs"][aria-busy="false"]').waitFor();
    await expect.poll(() => page.locator("[data-run]").getAttribute("data-status")).toBe("succeeded");
    expect(await page.locator('li[data-attempt="wobbly#1"]').innerText()).toMatch(/failed \(transient\) · \d+ ms/);
    expect(await page.locator('li[data-attempt="wobbly#2"]').innerText()).toMatch(/succeeded · \d+ ms/);
    await shot(page, "run-timeline");

    await visit(page, "#/costs", "costs");
    expect(await seriesPixels(page, "cost-by-customer", [0x2f, 0x6f, 0xdf])).toBeGreaterThan(0);
    const byCustomer = await page.locator('table[data-table="cost-by-customer"] tbody tr td:first-child').allInnerTexts();
    expect(byCustomer).toEqual(expect.arrayContaining(["acme", "globex"]));
    expect(await page.locator('table[data-table="profitability"] tbody tr').count()).toBe(3);
    expect(await page.locator('table[data-table="budgets"]').innerText()).toContain("50.0%, 80.0%");
    await shot(page, "costs");

    await visit(page, "#/dlq", "dlq");
    expect(await page.locator('table[data-table="dlq"]').innerText()).toContain(rt.recovering.runId);
    await shot(page, "dlq");

    await visit(page, "#/alerts", "alerts");
    expect(await page.locator('table[data-table="alerts"]').innerText()).toContain("dlq_entry");
    await shot(page, "alerts");

    await visit(page, "#/pools", "pools");
    if (poolsAnswer.status === 404) await expect.poll(() => page.locator("main .error").innerText()).toContain("no route for GET /v1/pools");
    await shot(page, "pools");

    // /docs/: Swagger UI from the Worker's own assets, on the same document.
    await page.goto(`${rt.base}/docs/`);
    await page.locator(".swagger-ui .info .title").waitFor();
    expect(await page.locator(".swagger-ui .info .title").innerText()).toContain("Runplane API");
    await page.locator(".opblock").first().waitFor();
    await shot(page, "docs");

    expect(w.problems()).toEqual([]);
    await w.context.close();
  });

  it("retries a dead-lettered run with its button, and the run succeeds", async () => {
    const w = await open();
    const { page } = w;
    await signIn(page, ADMIN_KEY);
    await visit(page, "#/dlq", "dlq");
    const row = page.locator('table[data-table="dlq"] tbody tr', { hasText: rt.recovering.runId });
    await row.getByRole("button", { name: /^Inspect/ }).click();
    expect(await page.locator('table[data-table="dlq-history"]').count()).toBe(1);
    // Its step fails every attempt that starts before failUntil: retry only after that.
    await new Promise((r) => setTimeout(r, Math.max(0, rt.recovering.failUntil + 500 - Date.now())));
    await row.getByRole("button", { name: /^Retry/ }).click();
    await expect.poll(() => page.locator("[data-dlq-status]").innerText()).toContain(`run ${rt.recovering.runId} is`);
    const run = await rt.admin.waitForRun(rt.recovering.runId, { intervalMs: 250, timeoutMs: 30_000 });
    expect(run.status).toBe("succeeded");
    await visit(page, `#/runs/${rt.recovering.runId}`, "runs");
    await expect.poll(() => page.locator("[data-run]").getAttribute("data-status")).toBe("succeeded");
    expect(await page.locator('li[data-attempt="deliver#1"]').innerText()).toMatch(/failed \(permanent\)/);
    expect(await page.locator('li[data-attempt="deliver#2"]').innerText()).toMatch(/succeeded/);
    await shot(page, "dlq-retried-run");
    expect(w.problems()).toEqual([]);
    await w.context.close();
  });

  it("edits a pool's scaling policy and sees it saved", async () => {
    const answer = await fetch(`${rt.base}/v1/pools`, { headers: { authorization: `Bearer ${ADMIN_KEY}` } });
    expect(answer.status).toBe(200);
    const { pools } = await answer.json();
    const pool = pools[0];
    const w = await open();
    const { page } = w;
    await signIn(page, ADMIN_KEY);
    await visit(page, "#/pools", "pools");
    // An idle pool has no samples in its series: the page starts it with the pool's state now, and the first live poll adds a point.
    await page.locator(`figure[data-chart="pool-${pool.name}"][data-samples]`).waitFor({ timeout: 15_000 });
    expect(await seriesPixels(page, `pool-${pool.name}`, [0x2e, 0x85, 0x40])).toBeGreaterThan(0);
    const form = page.getByRole("form", { name: `Scaling policy of ${pool.name}` });
    const next = pool.policy.maxConcurrency + 1;
    await form.getByLabel("maxConcurrency", { exact: true }).fill(String(next));
    await form.getByRole("button", { name: "Save policy" }).click();
    await expect.poll(() => page.locator(`[data-policy-status="${pool.name}"]`).innerText()).toMatch(/^Saved/);
    const after = await fetch(`${rt.base}/v1/pools/${pool.name}`, { headers: { authorization: `Bearer ${ADMIN_KEY}` } }).then((r) => r.json());
    expect(after.pool.policy.maxConcurrency).toBe(next);
    await shot(page, "pools-policy-saved");
    expect(w.problems()).toEqual([]);
    await w.context.close();
  });

  it("shows a customer key only its own data, on a phone as well", async () => {
    // A customer's sign-in asks GET /v1/customers (admin-only) to learn its role: the 403 is expected.
    const w = await open({ width: 390, height: 844 }, [{ path: "/v1/customers", status: 403 }]);
    const { page } = w;
    await signIn(page, rt.customers.acme.apiKey);
    expect(await page.locator("[data-role]").getAttribute("data-role")).toBe("customer");
    expect(await page.locator("nav").innerText()).not.toMatch(/DLQ|Pools/);
    // Readable on a phone: nothing wider than the screen.
    expect(await page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth + 1)).toBe(true);
    await shot(page, "customer-overview-phone");

    await visit(page, "#/runs", "runs");
    const customers = await page.locator('table[data-table="runs"] tbody tr td:nth-child(4)').allInnerTexts();
    expect(customers.length).toBeGreaterThanOrEqual(rt.runs.acme.length);
    expect(new Set(customers)).toEqual(new Set(["acme"]));
    // Another tenant's run is a 404, shown as the API's message.
    const theirs = rt.runs.globex[0]!;
    await visit(page, "#/costs", "costs");
    const keys = await page.locator('table[data-table="cost-by-customer"] tbody tr td:first-child').allInnerTexts();
    expect(keys).toEqual(["acme"]);
    expect(await page.locator('table[data-table="budgets"] tbody tr').count()).toBe(1);
    await visit(page, "#/alerts", "alerts");
    const alertCustomers = await page.locator('table[data-table="alerts"] tbody tr td:nth-child(4)').allInnerTexts();
    expect(new Set(alertCustomers)).toEqual(new Set(["acme"]));
    expect(w.problems()).toEqual([]);
    await w.context.close();

    const other = await open(undefined, [
      { path: "/v1/customers", status: 403 },
      { path: `/v1/runs/${theirs}`, status: 404 },
      { path: `/v1/runs/${theirs}/events`, status: 404 },
      { path: `/v1/runs/${theirs}/cost`, status: 404 },
    ]);
    await signIn(other.page, rt.customers.acme.apiKey);
    await visit(other.page, `#/runs/${theirs}`, "runs");
    expect(await other.page.locator("main .error").first().innerText()).toMatch(/not_found, HTTP 404/);
    expect(other.problems()).toEqual([]);
    await other.context.close();
  });

  it("tells a customer without runs what to do instead of drawing a blank chart", async () => {
    const w = await open(undefined, [{ path: "/v1/customers", status: 403 }]);
    await signIn(w.page, rt.customers.initech.apiKey);
    expect(await w.page.locator(".empty").first().innerText()).toMatch(/No runs yet[\s\S]*POST|npm start/);
    expect(await w.page.locator('figure[data-chart="runs-per-hour"]').count()).toBe(0);
    await shot(w.page, "empty-overview");
    expect(w.problems()).toEqual([]);
    await w.context.close();
  });
});
