import { createRoute, z } from "@hono/zod-openapi";
import type { App } from "../context";
import { adminOnly } from "../auth";
import { ClientName, bearer, errors, json } from "../openapi";
import { LedgerSchema } from "../schemas";

const route = createRoute({
  method: "get",
  path: "/v1/customers/{id}/ledger",
  operationId: "getCustomerLedger",
  tags: ["customers"],
  summary: "A customer's ledger, reconciled with D1's cost reports now (admin)",
  description:
    "Spend, holds and remaining budget. Compares the ledger's month (default: this month) with D1's cost rollups, run by run. A run D1 lacks or holds less of is sent again (listed in `repaired`); a difference nothing explains is listed in `unexplained` and raises a `ledger_mismatch` alert. The cron does the same once a minute for the customers checked least recently.",
  security: bearer,
  middleware: adminOnly,
  request: {
    params: z.object({ id: ClientName("id") }),
    query: z.object({ month: z.string().regex(/^\d{4}-(0[1-9]|1[0-2])$/, "must be YYYY-MM").optional().openapi({ example: "2026-12" }) }),
  },
  responses: { 200: json(z.object({ ledger: LedgerSchema }), "The ledger"), ...errors(400, 401, 403, 404, 429, 503) },
});

export function registerCustomerLedger(app: App) {
  app.openapi(route, async (c) => {
    const { id } = c.req.valid("param");
    return c.json({ ledger: await c.get("services").customers.ledgerView(id, c.req.valid("query").month) }, 200);
  });
}
