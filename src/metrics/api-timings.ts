/**
 * API response times, aggregated in memory per isolate: per minute, route, method, status
 * class and customer, a count, a sum, a maximum and a duration sketch (src/metrics/sketch.ts).
 * Nothing is sent per request: the isolate flushes its aggregates through the events queue at
 * most every FLUSH_INTERVAL_MS (or once MAX_PENDING_REQUESTS are held), so a request costs no
 * queue operation and no D1 row of its own. What an isolate holds when it is evicted is lost:
 * at most FLUSH_INTERVAL_MS of its timings (they are not money). Pure: no bindings.
 */
import { addToHistogram, type Histogram } from "./sketch";
import { minuteOf } from "./buckets";

export const FLUSH_INTERVAL_MS = 10_000;
/** Set on the minute cron's own probe of the control plane: it is not client traffic, so not timed. */
export const PROBE_HEADER = "x-runplane-probe";
export const MAX_PENDING_REQUESTS = 5_000;
/** Entries per events message: each is a few hundred bytes, far below the 128 KB limit. */
export const ENTRIES_PER_MESSAGE = 200;

export interface TimingEntry {
  minute: number;
  route: string;
  method: string;
  /** 2 for 2xx, …, 5 for 5xx */
  statusClass: number;
  /** "" for the admin key and unauthenticated requests */
  customerId: string;
  count: number;
  sumMs: number;
  maxMs: number;
  hist: Histogram;
}

export interface TimingSample {
  kind: "metrics.api";
  v: 1;
  /** isolate id and flush sequence: a redelivered sample is recognised and ignored */
  sampleId: string;
  entries: TimingEntry[];
}

export class TimingAggregator {
  private entries = new Map<string, TimingEntry>();
  private pending = 0;
  private seq = 0;
  private lastFlush: number;

  constructor(
    private readonly isolateId: string,
    now: number,
  ) {
    this.lastFlush = now;
  }

  record(at: number, route: string, method: string, status: number, customerId: string, ms: number): void {
    const minute = minuteOf(at);
    const statusClass = Math.min(5, Math.max(1, Math.floor(status / 100)));
    const key = `${minute}\u0000${route}\u0000${method}\u0000${statusClass}\u0000${customerId}`;
    let entry = this.entries.get(key);
    if (!entry) this.entries.set(key, (entry = { minute, route, method, statusClass, customerId, count: 0, sumMs: 0, maxMs: 0, hist: {} }));
    const value = Math.max(0, Math.round(ms));
    entry.count += 1;
    entry.sumMs += value;
    entry.maxMs = Math.max(entry.maxMs, value);
    addToHistogram(entry.hist, value);
    this.pending += 1;
  }

  get size(): number {
    return this.pending;
  }

  /** Whether the isolate should flush now. */
  due(now: number): boolean {
    return this.pending > 0 && (now - this.lastFlush >= FLUSH_INTERVAL_MS || this.pending >= MAX_PENDING_REQUESTS);
  }

  /** Takes everything held, as events messages; the aggregator starts empty. */
  drain(now: number): TimingSample[] {
    const all = [...this.entries.values()];
    this.entries.clear();
    this.pending = 0;
    this.lastFlush = now;
    const samples: TimingSample[] = [];
    for (let i = 0; i < all.length; i += ENTRIES_PER_MESSAGE) {
      samples.push({ kind: "metrics.api", v: 1, sampleId: `${this.isolateId}:${++this.seq}`, entries: all.slice(i, i + ENTRIES_PER_MESSAGE) });
    }
    return samples;
  }
}
