// Small DOM helpers: the dashboard is plain TypeScript and DOM, no framework (page weight).
import { RunplaneError } from "@runplane/client";

type Attrs = Record<string, string | number | boolean | null | undefined | ((event: Event) => void)>;
type Child = Node | string | number | null | undefined | false;

/** An element with attributes (`on…` are listeners; false/null/undefined are left out) and children. */
export function h<K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Attrs = {}, ...children: (Child | Child[])[]): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === false || value === null || value === undefined) continue;
    if (typeof value === "function") el.addEventListener(name.slice(2), value);
    else el.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

/** What a failed call says: the API's own message (and code), else the error's text. */
export function errorText(err: unknown): string {
  if (err instanceof RunplaneError) return `${err.message} (${err.code}, HTTP ${err.status})`;
  return err instanceof Error ? err.message : String(err);
}

export const errorBox = (err: unknown) => h("p", { class: "error", role: "alert" }, errorText(err));

/** An empty state that says what to do next, instead of a blank chart. */
export const emptyState = (what: string, hint: Child) => h("div", { class: "empty" }, h("p", {}, h("strong", {}, what)), h("p", {}, hint));

export const code = (text: string) => h("code", {}, text);

/** A figure with its label, for the tiles beside the charts; `testId` lets tests find the number. */
export const stat = (label: string, value: string, testId?: string) =>
  h("div", { class: "stat" }, h("span", { class: "stat-label" }, label), h("span", { class: "stat-value", "data-stat": testId }, value));

export const percent = (x: number | null | undefined) => (x === null || x === undefined ? "n/a" : `${(x * 100).toFixed(1)}%`);
export const ms = (x: number | null | undefined) => (x === null || x === undefined ? "n/a" : x >= 10_000 ? `${(x / 1000).toFixed(1)} s` : `${Math.round(x)} ms`);
export const usd = (x: string | null | undefined) => (x === null || x === undefined ? "n/a" : `$${x}`);
/** Nano-USD (a JSON number, or a decimal string past 2^53) as dollars for a chart axis; display text uses the API's `…Usd` strings. */
export const nanoToUsd = (nano: number | string | null | undefined) => (nano === null || nano === undefined ? 0 : Number(nano) / 1e9);
export const when = (iso: string | null | undefined) => (iso ? new Date(iso).toISOString().replace("T", " ").slice(0, 19) : "—");

/** A table with a caption; `rows` are cells already rendered. */
export function table(caption: string, headings: string[], rows: Child[][], attrs: Attrs = {}): HTMLTableElement {
  return h(
    "table",
    attrs,
    h("caption", {}, caption),
    h("thead", {}, h("tr", {}, headings.map((x) => h("th", { scope: "col" }, x)))),
    h("tbody", {}, rows.map((r) => h("tr", {}, r.map((c) => h("td", {}, c))))),
  );
}

/** A labelled form field (label bound by id). */
export function field(label: string, input: HTMLInputElement | HTMLSelectElement): HTMLElement {
  const id = input.id || `f-${label.toLowerCase().replace(/[^a-z0-9]+/g, "-")}-${Math.random().toString(36).slice(2, 7)}`;
  input.id = id;
  return h("div", { class: "field" }, h("label", { for: id }, label), input);
}

export function select(name: string, options: readonly string[], value = "", anyLabel = "any"): HTMLSelectElement {
  return h("select", { name }, h("option", { value: "" }, anyLabel), options.map((o) => h("option", { value: o, selected: o === value }, o)));
}

/** A section of a page: a heading and its content. */
export const card = (title: string, ...children: (Child | Child[])[]) => h("section", { class: "card", "aria-label": title }, h("h2", {}, title), ...children);

/** The hour the range ends in, and `hours` before it: the ranges the charts ask the API for. */
export function hourRange(hours: number, now = Date.now()) {
  const end = Math.floor(now / 3_600_000) * 3_600_000 + 3_600_000;
  return { from: new Date(end - hours * 3_600_000).toISOString(), to: new Date(end).toISOString() };
}
