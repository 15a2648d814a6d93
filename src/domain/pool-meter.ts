/**
 * A pool's utilization and processing rate over a recent window, from what its controller sees:
 * slots held (admitted chains) and slots provisioned (the desired concurrency), integrated over
 * time with an exponential window of time constant `windowMs`, and the steps reported done.
 *
 *   utilization     = ∫ busy slots dt ÷ ∫ desired slots dt      (busy ms ÷ (capacity × wall ms))
 *   processing rate = steps done ÷ ∫ 1 dt                       (per second, over the time measured)
 *
 * Dividing by the window's own weight, not by the time constant, is what keeps a meter that has
 * just started (a controller's first wake) from reading a burst's rate as a fraction of it.
 *
 * A slot is busy from the chain's admission to its report (or its lease's end). Pure: the caller
 * passes the levels that held since the last update and the time now.
 */
import { z } from "zod";

export const DEFAULT_METER_WINDOW_MS = 30_000;

export const PoolMeterSchema = z.object({
  at: z.number(),
  /** ∫ busy slots dt (slot-ms), exponentially weighted. */
  busy: z.number().min(0),
  /** ∫ desired slots dt (slot-ms), exponentially weighted. */
  capacity: z.number().min(0),
  /** Steps reported done, exponentially weighted. */
  steps: z.number().min(0),
  /** ∫ 1 dt (ms), exponentially weighted: the time measured (a meter stored before it had one counts a whole window). */
  span: z.number().min(0).default(DEFAULT_METER_WINDOW_MS),
});
export type PoolMeter = z.infer<typeof PoolMeterSchema>;


export const emptyMeter = (now: number): PoolMeter => ({ at: now, busy: 0, capacity: 0, steps: 0, span: 0 });

/** Brings the meter to `now`, the levels `busy` and `desired` having held since its last update. */
export function advanceMeter(meter: PoolMeter, now: number, busy: number, desired: number, windowMs = DEFAULT_METER_WINDOW_MS): PoolMeter {
  const dt = Math.max(0, now - meter.at);
  if (dt === 0) return meter;
  const keep = Math.exp(-dt / windowMs);
  // ∫₀^dt level · e^(−(dt−s)/τ) ds = level · τ · (1 − e^(−dt/τ)): exact for a level held over the gap.
  const gain = windowMs * (1 - keep);
  return { at: now, busy: meter.busy * keep + busy * gain, capacity: meter.capacity * keep + desired * gain, steps: meter.steps * keep, span: meter.span * keep + gain };
}

export const recordSteps = (meter: PoolMeter, steps: number): PoolMeter => ({ ...meter, steps: meter.steps + Math.max(0, steps) });

/** Busy ÷ capacity, 0…1; null when no capacity was provisioned over the window (a pool at zero). */
export function utilizationOf(meter: PoolMeter): number | null {
  // Below one slot-second the ratio is noise (a pool that has just woken, or has long been at zero).
  if (meter.capacity < 1_000) return null;
  return Math.min(1, meter.busy / meter.capacity);
}

/** Steps done per second over the time measured (at most about the window); 0 before a second of it. */
export const processingRateOf = (meter: PoolMeter): number => (meter.span < 1_000 ? 0 : (meter.steps * 1000) / meter.span);
