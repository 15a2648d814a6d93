import { expect, it } from "vitest";
import { api } from "../helpers";

// The served document is checked in as clients/typescript/openapi.json: the client's types are
// generated from it and `npm run lint:openapi` lints it. `npm run client:generate` rewrites it
// (vitest -u); a route changed without regenerating fails here.
it("serves the document checked in as clients/typescript/openapi.json", async () => {
  const res = await api("GET", "/openapi.json", { key: null });
  expect(res.status).toBe(200);
  await expect(`${JSON.stringify(res.body, null, 2)}\n`).toMatchFileSnapshot("../../clients/typescript/openapi.json");
});
