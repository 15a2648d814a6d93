// Time-series charts with uPlot (canvas, ~50 KB minified, no dependencies): bundled, so nothing
// comes from a CDN. Each chart sits next to the numbers it draws.
import uPlot from "uplot";
import { h } from "./ui";

export interface SeriesSpec {
  label: string;
  values: (number | null)[];
  color: string;
  /** Bars for counts per bucket, lines for levels and rates. */
  bars?: boolean;
}

export interface ChartSpec {
  /** The chart's name for tests and the accessible label. */
  id: string;
  title: string;
  /** Unix seconds of each point (bucket starts). */
  times: number[];
  series: SeriesSpec[];
  /** Formats the y axis and the legend's values. */
  format?: (value: number) => string;
  height?: number;
  /** The time range shown (Unix seconds), e.g. the range the API was asked for; default: the data's. */
  span?: [number, number];
}

const live = new Set<uPlot>();
/** Charts of the page being left: destroyed so their resize observers and canvases go. */
export function destroyCharts() {
  for (const plot of live) plot.destroy();
  live.clear();
}

/**
 * A chart in `host`, sized to its width (and resized with it). When drawn it marks its figure
 * data-drawn="true", which the browser tests wait for before reading the canvas.
 */
export function chart(spec: ChartSpec): { figure: HTMLElement; update: (times: number[], series: (number | null)[][]) => void } {
  const host = h("div", { class: "chart-canvas" });
  const figure = h("figure", { class: "chart", "data-chart": spec.id, role: "img", "aria-label": spec.title }, h("figcaption", {}, spec.title), host);
  const format = spec.format ?? ((v: number) => String(Math.round(v * 100) / 100));
  const bars = uPlot.paths.bars?.({ size: [0.6, 40] });
  const opts: uPlot.Options = {
    width: 600,
    height: spec.height ?? 200,
    series: [
      {},
      ...spec.series.map((s) => ({
        label: s.label,
        stroke: s.color,
        fill: s.bars ? s.color : `${s.color}22`,
        width: s.bars ? 0 : 2,
        paths: s.bars ? bars : undefined,
        points: { show: !s.bars },
        value: (_u: uPlot, v: number | null) => (v === null ? "—" : format(v)),
      })),
    ],
    // The y axis is as wide as its longest label (dollar amounts with six decimals are long).
    axes: [{}, { values: (_u, ticks) => ticks.map(format), size: (_u, values) => 16 + 7 * Math.max(3, ...(values ?? []).map((v) => String(v).length)) }],
    // A lone point would otherwise get uPlot's default range of years around it.
    scales: { x: { time: true, range: (_u, min, max) => spec.span ?? (min === max ? [min - 300, max + 300] : [min, max]) }, y: { range: (_u, min, max) => [Math.min(0, min), max > 0 ? max * 1.1 : 1] } },
    cursor: { drag: { x: false, y: false } },
    hooks: { draw: [() => figure.setAttribute("data-drawn", "true")] },
  };
  const data = (times: number[], values: (number | null)[][]): uPlot.AlignedData => [times, ...values];
  let plot: uPlot | null = null;
  // uPlot needs a width in pixels: wait until the figure is in the page, then follow its width.
  const observer = new ResizeObserver(() => {
    const width = Math.max(240, Math.floor(host.clientWidth));
    if (!plot) {
      plot = new uPlot({ ...opts, width }, data(spec.times, spec.series.map((s) => s.values)), host);
      live.add(plot);
      const destroy = plot.destroy.bind(plot);
      plot.destroy = () => {
        observer.disconnect();
        destroy();
      };
    } else if (plot.width !== width) {
      plot.setSize({ width, height: opts.height });
    }
  });
  observer.observe(host);
  return {
    figure,
    update: (times, series) => plot?.setData(data(times, series)),
  };
}

/** Unix seconds of an ISO timestamp, as uPlot's time axis takes them. */
export const seconds = (iso: string) => Math.floor(Date.parse(iso) / 1000);
