#!/usr/bin/env node
/**
 * npm run capacity — the capacity model's table (src/capacity/): each component's load on its
 * hottest shard at 1k, 10k and 100k steps/s, against its published ceiling, for 1,000 customers
 * with a Zipf mix, and the D1 storage horizon. The README's "Capacity" section is this output.
 */
import { COMPONENTS, D1_BYTES_PER_RUN, D1_DATABASE_BYTES, customerLedgerWithSubLedgers } from "../src/capacity/components.ts";
import { ceilingRate, componentLoad, firstBottleneck, harmonic, hoursToFill, sustainedRateForRetention } from "../src/capacity/model.ts";

const customers = Number(process.argv.find((a) => a.startsWith("--customers="))?.split("=")[1] ?? 1000);
const stepsPerRun = 5;
const w = { stepsPerRun, hottestCustomerShare: 1 / harmonic(customers), hottestPoolShare: 1 };
const rates = [1_000, 10_000, 100_000];
const fmt = (x) => (x >= 100 ? Math.round(x).toLocaleString("en-US") : x.toFixed(x >= 10 ? 0 : 2));

console.log(`workload: ${stepsPerRun}-step runs, ${customers} customers (Zipf: the busiest has ${(w.hottestCustomerShare * 100).toFixed(1)}%), one pool\n`);
console.log(["component", "per step", ...rates.map((r) => `hottest shard @ ${r / 1000}k steps/s`), "ceiling", "shards needed @ 10k / 100k"].join(" | "));
for (const c of COMPONENTS) {
  const loads = rates.map((r) => componentLoad(c, { ...w, stepsPerSecond: r }));
  console.log(
    [c.name, `${c.perStep} ${c.unit.split("/")[0]}`, ...loads.map((l) => `${fmt(l.hottestShard)} (${Math.round(l.utilization * 100)}%)`), `${fmt(c.ceiling)} ${c.unit}`, `${loads[1].shardsNeeded} / ${loads[2].shardsNeeded}`].join(" | "),
  );
}
const first = firstBottleneck(COMPONENTS, w);
console.log(`\nfirst ceiling (throughput): ${first.name} at ${fmt(first.stepsPerSecond)} steps/s`);
console.log(`D1 storage: ${D1_BYTES_PER_RUN} bytes per run; a 10 GB database fills in ${rates.map((r) => `${hoursToFill(r, stepsPerRun, D1_BYTES_PER_RUN, D1_DATABASE_BYTES).toFixed(2)} h @ ${r / 1000}k`).join(", ")}`);
console.log(`D1 storage at 30 days of run detail: one database holds ${sustainedRateForRetention(30, stepsPerRun, D1_BYTES_PER_RUN, D1_DATABASE_BYTES).toFixed(1)} steps/s sustained; at 1 day ${sustainedRateForRetention(1, stepsPerRun, D1_BYTES_PER_RUN, D1_DATABASE_BYTES).toFixed(0)}`);
for (const c of COMPONENTS) if (c.remedy) console.log(`${c.name}: ${c.remedy}`);
const subLedgers = Number(process.argv.find((a) => a.startsWith("--ledger-subshards="))?.split("=")[1] ?? 8);
console.log(`\nthe hottest customer with ${subLedgers} cost sub-ledgers (LEDGER_SUBSHARDS):`);
for (const c of customerLedgerWithSubLedgers(subLedgers)) {
  const loads = rates.map((r) => componentLoad(c, { ...w, stepsPerSecond: r }));
  console.log([c.name, `${c.perStep} ${c.unit.split("/")[0]}`, ...loads.map((l) => `${fmt(l.hottestShard)} (${Math.round(l.utilization * 100)}%)`), `ceiling at ${fmt(ceilingRate(c, w))} steps/s`].join(" | "));
}
