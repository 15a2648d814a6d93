/**
 * The order in which a pool admits waiting dispatches: priority lanes with aging, and within a
 * lane start-time fair queuing between customers, weighted by plan. Pure: no bindings, no clock
 * (the caller passes `now`), unit-tested on its own (test/unit/fair-queue.test.ts).
 *
 * Lanes. high > normal > low. A dispatch that has waited `agingMs` is promoted one lane, and one
 * more after each further `agingMs` (low → normal → high), so no lane starves: a low dispatch is
 * in the high lane after 2 × agingMs, ahead of every dispatch its customer enqueued after it.
 *
 * Fair sharing. The flow is the customer (not its projects or run types: spreading a flood over
 * them changes nothing). Each customer has a virtual time; admitting one of its dispatches
 * advances it by the dispatch's expected busy time ÷ the customer's weight (its running average
 * of measured chain busy time), corrected by the measured time when the chain reports done.
 * Among the customers with work in the chosen lane, the one with the least virtual time goes
 * next (SFQ: Goyal, Vin & Cheng 1996). A customer that becomes busy again starts at the pool's
 * virtual time, not below it: idle time earns no credit, and its share is back as soon as it has
 * work (the next admission is its). Work-conserving: a customer with nothing waiting is skipped,
 * so capacity it does not use goes to the others.
 */
import type { Priority } from "./run-status";

export interface QueuedDispatch {
  /** `${runId}:${stepIndex}:${dispatch}`: one entry per dispatch generation, whatever re-sends it. */
  key: string;
  customerId: string;
  priority: Priority;
  enqueuedAt: number;
  /** The customer's plan weight (default 1). */
  weight: number;
}

export interface FlowState {
  vtime: number;
  weight: number;
  /** Running average of the customer's chain busy time (ms), the charge made at admission. */
  costMs: number;
}

interface Flow extends FlowState {
  lanes: [QueuedDispatch[], QueuedDispatch[], QueuedDispatch[]];
  ready: number;
  /** Admitted, not yet completed: the flow is kept for their corrections. */
  running: number;
}

export const LANE_RANK: Record<Priority, number> = { high: 0, normal: 1, low: 2 };
export const LANES: readonly Priority[] = ["high", "normal", "low"];
export const SCHEDULING_MODES = ["fair", "fifo"] as const;
export type SchedulingMode = (typeof SCHEDULING_MODES)[number];

/** The lane a dispatch competes in now: its own, promoted once per `agingMs` it has waited. */
export function effectiveLane(entry: Pick<QueuedDispatch, "priority" | "enqueuedAt">, now: number, agingMs: number): number {
  const promotions = Math.floor(Math.max(0, now - entry.enqueuedAt) / agingMs);
  return Math.max(0, LANE_RANK[entry.priority] - promotions);
}

/** Older first; ties by key, so the order never depends on insertion. */
const before = (a: QueuedDispatch, b: QueuedDispatch) => a.enqueuedAt < b.enqueuedAt || (a.enqueuedAt === b.enqueuedAt && a.key < b.key);

/** The charge's smoothing: each measured chain moves the customer's average by a fifth. */
const COST_EMA = 0.2;

export class FairQueue<E extends QueuedDispatch = QueuedDispatch> {
  private readonly flows = new Map<string, Flow>();
  private readonly entries = new Map<string, E>();
  /** The pool's virtual time: the least customer virtual time at the last admission. Never decreases. */
  virtualTime = 0;

  constructor(private readonly defaultCostMs = 100) {}

  get size(): number {
    return this.entries.size;
  }

  has(key: string): boolean {
    return this.entries.has(key);
  }

  get(key: string): E | undefined {
    return this.entries.get(key);
  }

  values(): IterableIterator<E> {
    return this.entries.values();
  }

  /** Ready dispatches by lane (their own lane, before aging). */
  countByLane(): Record<Priority, number> {
    const counts: Record<Priority, number> = { high: 0, normal: 0, low: 0 };
    for (const e of this.entries.values()) counts[e.priority] += 1;
    return counts;
  }

  /** A restored flow (from storage, after a wake). */
  restoreFlow(customerId: string, state: FlowState): void {
    const flow = this.flow(customerId, state.weight);
    flow.vtime = state.vtime;
    flow.weight = state.weight;
    flow.costMs = state.costMs;
  }

  /** What to persist for a customer: null when the flow is gone (nothing waiting or running, no lead to keep). */
  flowState(customerId: string): FlowState | null {
    const f = this.flows.get(customerId);
    return f ? { vtime: f.vtime, weight: f.weight, costMs: f.costMs } : null;
  }

  /** Adds a waiting dispatch; false when its key is already waiting (a re-send changes nothing). */
  add(entry: E): boolean {
    if (this.entries.has(entry.key)) return false;
    const flow = this.flow(entry.customerId, entry.weight);
    flow.weight = entry.weight;
    // Busy again after a pause: no credit for the pause (it starts at the pool's virtual time).
    if (flow.ready === 0) flow.vtime = Math.max(flow.vtime, this.virtualTime);
    this.insert(flow, entry);
    return true;
  }

  /** Puts back a dispatch `take` handed out that could not be admitted after all (its send failed), with its charge refunded. */
  untake(entry: E, charge: number): void {
    const flow = this.flow(entry.customerId, entry.weight);
    flow.vtime -= charge;
    flow.running = Math.max(0, flow.running - 1);
    if (!this.entries.has(entry.key)) this.insert(flow, entry);
  }

  private insert(flow: Flow, entry: E): void {
    const lane = flow.lanes[LANE_RANK[entry.priority]]!;
    let i = lane.length;
    while (i > 0 && before(entry, lane[i - 1]!)) i--;
    lane.splice(i, 0, entry);
    flow.ready += 1;
    this.entries.set(entry.key, entry);
  }

  /** Takes a waiting dispatch out without admitting it. */
  remove(key: string): E | null {
    const entry = this.entries.get(key);
    if (!entry) return null;
    const flow = this.flows.get(entry.customerId)!;
    const lane = flow.lanes[LANE_RANK[entry.priority]]!;
    lane.splice(lane.indexOf(entry), 1);
    flow.ready -= 1;
    this.entries.delete(key);
    this.prune(entry.customerId);
    return entry;
  }

  /** The dispatch to admit next, or null when none waits. Does not change anything. */
  peek(now: number, agingMs: number, mode: SchedulingMode = "fair"): E | null {
    let best: { entry: QueuedDispatch; lane: number; flow: Flow } | null = null;
    for (const flow of this.flows.values()) {
      if (flow.ready === 0) continue;
      // The flow's candidate: the head in its best effective lane (heads are each lane's oldest, the most aged).
      let cand: QueuedDispatch | null = null;
      let candLane = Infinity;
      for (const lane of flow.lanes) {
        const head = lane[0];
        if (!head) continue;
        const eff = effectiveLane(head, now, agingMs);
        if (eff < candLane || (eff === candLane && cand && before(head, cand))) {
          cand = head;
          candLane = eff;
        }
      }
      if (!cand) continue;
      if (!best || candLane < best.lane) {
        best = { entry: cand, lane: candLane, flow };
        continue;
      }
      if (candLane > best.lane) continue;
      const better =
        mode === "fifo"
          ? before(cand, best.entry)
          : flow.vtime < best.flow.vtime || (flow.vtime === best.flow.vtime && before(cand, best.entry));
      if (better) best = { entry: cand, lane: candLane, flow };
    }
    return (best?.entry as E | undefined) ?? null;
  }

  /** Admits the next dispatch: out of the waiting set, its customer charged. Returns it and the charge (for `complete`). */
  take(now: number, agingMs: number, mode: SchedulingMode = "fair"): { entry: E; charge: number } | null {
    const entry = this.peek(now, agingMs, mode);
    if (!entry) return null;
    const flow = this.flows.get(entry.customerId)!;
    this.virtualTime = Math.max(this.virtualTime, flow.vtime);
    const charge = flow.costMs / flow.weight;
    flow.vtime += charge;
    const lane = flow.lanes[LANE_RANK[entry.priority]]!;
    lane.splice(lane.indexOf(entry), 1);
    flow.ready -= 1;
    flow.running += 1;
    this.entries.delete(entry.key);
    return { entry, charge };
  }

  /**
   * An admitted chain ended after `busyMs` (null: unknown, e.g. its slot expired): the customer's
   * charge becomes the measured time, and its average learns from it.
   */
  complete(customerId: string, charge: number, busyMs: number | null): void {
    const flow = this.flows.get(customerId);
    if (!flow) return;
    flow.running = Math.max(0, flow.running - 1);
    if (busyMs !== null && Number.isFinite(busyMs) && busyMs >= 0) {
      flow.vtime += busyMs / flow.weight - charge;
      flow.costMs = Math.max(1, flow.costMs + COST_EMA * (busyMs - flow.costMs));
    }
    this.prune(customerId);
  }

  /** A restored admission (after a wake): the flow is kept for its completion. */
  restoreRunning(customerId: string, weight: number): void {
    this.flow(customerId, weight).running += 1;
  }

  private flow(customerId: string, weight: number): Flow {
    let flow = this.flows.get(customerId);
    if (!flow) {
      flow = { vtime: this.virtualTime, weight, costMs: this.defaultCostMs, lanes: [[], [], []], ready: 0, running: 0 };
      this.flows.set(customerId, flow);
    }
    return flow;
  }

  /** A flow with nothing waiting or running and no lead over the pool carries nothing worth keeping. */
  private prune(customerId: string): void {
    const flow = this.flows.get(customerId);
    if (flow && flow.ready === 0 && flow.running === 0 && flow.vtime <= this.virtualTime) this.flows.delete(customerId);
  }
}
