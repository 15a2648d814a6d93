/**
 * Gauges and counters as text a Prometheus (or Grafana Agent) scrape reads: the OpenMetrics 1.0
 * text format when the scraper asks for it (`Accept: application/openmetrics-text`), else the
 * Prometheus text format 0.0.4. They differ in two places: an OpenMetrics counter family is
 * named without `_total` (its samples carry it) and the exposition ends with `# EOF`. Money is
 * exposed as integer nano-USD, written as exact decimal integers. Pure: no bindings.
 */

export interface Sample {
  labels?: Record<string, string>;
  value: number | bigint;
}

export interface MetricFamily {
  /** For a counter: the name without `_total`. */
  name: string;
  type: "gauge" | "counter";
  help: string;
  samples: Sample[];
}

export const OPENMETRICS_CONTENT_TYPE = "application/openmetrics-text; version=1.0.0; charset=utf-8";
export const PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

const escapeLabel = (v: string) => v.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/"/g, '\\"');
const escapeHelp = (v: string, openMetrics: boolean) => {
  const out = v.replace(/\\/g, "\\\\").replace(/\n/g, "\\n");
  return openMetrics ? out.replace(/"/g, '\\"') : out;
};

function formatValue(value: number | bigint): string {
  if (typeof value === "bigint") return value.toString();
  if (Number.isNaN(value)) return "NaN";
  if (value === Infinity) return "+Inf";
  if (value === -Infinity) return "-Inf";
  return Number.isInteger(value) ? value.toFixed(0) : String(value);
}

function labels(l: Record<string, string> | undefined): string {
  const entries = Object.entries(l ?? {});
  if (entries.length === 0) return "";
  for (const [k] of entries) if (!LABEL.test(k)) throw new Error(`invalid label name ${k}`);
  return `{${entries.map(([k, v]) => `${k}="${escapeLabel(v)}"`).join(",")}}`;
}

export function formatMetrics(families: readonly MetricFamily[], openMetrics: boolean): string {
  const lines: string[] = [];
  for (const f of families) {
    if (!NAME.test(f.name) || f.name.endsWith("_total")) throw new Error(`invalid metric family name ${f.name}`);
    const sampleName = f.type === "counter" ? `${f.name}_total` : f.name;
    const familyName = openMetrics ? f.name : sampleName;
    lines.push(`# HELP ${familyName} ${escapeHelp(f.help, openMetrics)}`);
    lines.push(`# TYPE ${familyName} ${f.type}`);
    for (const s of f.samples) lines.push(`${sampleName}${labels(s.labels)} ${formatValue(s.value)}`);
  }
  if (openMetrics) lines.push("# EOF");
  return `${lines.join("\n")}\n`;
}

/** Whether an Accept header asks for OpenMetrics. */
export const wantsOpenMetrics = (accept: string | undefined) => /application\/openmetrics-text/i.test(accept ?? "");
