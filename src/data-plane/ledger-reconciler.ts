/**
 * The cron's ledger check: each tick, the customers checked least recently have their ledger
 * compared with D1's cost rollups (CustomerLedger.reconcile), which repairs D1 where it is
 * behind and alerts on what nothing explains. In a month's first two days the month before is
 * checked too, for costs incurred just before midnight.
 */
import { ledgerStub } from "../../durable-objects/ledger/rpc";
import { monthOf } from "../domain/cost-records";
import { errorMessage, log } from "../lib/log";
import { countD1 } from "../lib/usage";

const PER_TICK = 50;
const EARLY_IN_MONTH_MS = 2 * 86_400_000;

export async function reconcileLedgers(env: Env, now = Date.now()): Promise<{ checked: number; repaired: number; unexplained: number }> {
  const due = await env.DB.prepare("SELECT id FROM customers ORDER BY COALESCE(ledger_checked_at, 0), id LIMIT ?1").bind(PER_TICK).all<{ id: string }>();
  countD1(due);
  const start = new Date(now);
  const monthStart = Date.UTC(start.getUTCFullYear(), start.getUTCMonth(), 1);
  const months = [monthOf(now), ...(now - monthStart < EARLY_IN_MONTH_MS ? [monthOf(monthStart - 1)] : [])];
  let repaired = 0;
  let unexplained = 0;
  const checked: string[] = [];
  for (const { id } of due.results) {
    try {
      for (const month of months) {
        const report = await ledgerStub(env, id).reconcile({ customerId: id, month });
        repaired += report.repaired.length;
        unexplained += report.unexplained.length;
      }
      checked.push(id);
    } catch (err) {
      log("ledger.reconcile_failed", { customerId: id, error: errorMessage(err) }, "error");
    }
  }
  if (checked.length > 0) {
    countD1(await env.DB.prepare("UPDATE customers SET ledger_checked_at = ?1 WHERE id IN (SELECT value FROM json_each(?2))").bind(now, JSON.stringify(checked)).run());
  }
  if (repaired > 0 || unexplained > 0) log("ledger.reconcile_tick", { checked: checked.length, repaired, unexplained }, unexplained > 0 ? "error" : "warn");
  return { checked: checked.length, repaired, unexplained };
}
