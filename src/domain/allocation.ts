/**
 * Sharing a fixed amount (the platform's fixed monthly cost) among customers, exactly: the
 * shares are whole nano-USD and always sum to the amount, never a nano more or less.
 */

export interface AllocationShare {
  key: string;
  /** Relative weight; 1 each for an even split, direct cost for a weighted one. */
  weight: bigint;
}

/**
 * Largest-remainder (Hamilton) apportionment: each key first gets the floor of its exact
 * share, then the nano-USD left over go one each to the largest remainders, ties to the
 * smaller key, so the result is deterministic. Keys with weight 0 get 0. When no key has
 * weight, nothing can be allocated and the result is empty: the caller decides who bears it.
 */
export function allocateExactly(amount: bigint, shares: readonly AllocationShare[]): Map<string, bigint> {
  if (amount < 0n) throw new RangeError("the amount to allocate must not be negative");
  const keys = new Set<string>();
  for (const s of shares) {
    if (s.weight < 0n) throw new RangeError(`weight of "${s.key}" is negative`);
    if (keys.has(s.key)) throw new RangeError(`"${s.key}" appears twice`);
    keys.add(s.key);
  }
  const totalWeight = shares.reduce((sum, s) => sum + s.weight, 0n);
  if (totalWeight === 0n) return new Map();
  const parts = shares.map((s) => {
    const exact = amount * s.weight;
    return { key: s.key, base: exact / totalWeight, remainder: exact % totalWeight };
  });
  let leftover = amount - parts.reduce((sum, p) => sum + p.base, 0n);
  const byRemainder = [...parts].sort((a, b) => (a.remainder === b.remainder ? (a.key < b.key ? -1 : a.key > b.key ? 1 : 0) : a.remainder > b.remainder ? -1 : 1));
  const result = new Map(parts.map((p) => [p.key, p.base]));
  // leftover < number of keys with a non-zero remainder, so one pass suffices.
  for (const p of byRemainder) {
    if (leftover === 0n) break;
    result.set(p.key, p.base + 1n);
    leftover -= 1n;
  }
  return result;
}

export type AllocationMethod = "even" | "weighted";
export const ALLOCATION_METHODS: readonly AllocationMethod[] = ["even", "weighted"];

export interface CustomerMonth {
  customerId: string;
  /** runs the customer created in the month */
  runs: number;
  directCostNanoUsd: bigint;
}

/**
 * The platform's rule for its fixed monthly cost. "even": equal shares for every customer
 * with runs that month. "weighted": in proportion to each customer's direct cost, falling
 * back to even when nobody has any cost (the fixed cost is still owed when all usage was
 * free). Customers outside the split get nothing; with nobody to share it the map is empty.
 */
export function allocateFixedCost(amount: bigint, method: AllocationMethod, customers: readonly CustomerMonth[]): Map<string, bigint> {
  const withCost = customers.filter((c) => c.directCostNanoUsd > 0n);
  if (method === "weighted" && withCost.length > 0) {
    return allocateExactly(amount, withCost.map((c) => ({ key: c.customerId, weight: c.directCostNanoUsd })));
  }
  return allocateExactly(amount, customers.filter((c) => c.runs > 0).map((c) => ({ key: c.customerId, weight: 1n })));
}
