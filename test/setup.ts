import { applyD1Migrations } from "cloudflare:test";
import { env } from "cloudflare:workers";

await applyD1Migrations(env.DB, env.TEST_MIGRATIONS);

// Tests send traffic only to loopback. Anything else must be mocked (vi.spyOn(globalThis, "fetch")
// in the test); an unmocked call fails loudly here instead of reaching the network.
const realFetch = globalThis.fetch;
globalThis.fetch = async (input: RequestInfo | URL, init?: RequestInit) => {
  const url = new URL(input instanceof Request ? input.url : String(input));
  const host = url.hostname.replace(/^\[|\]$/g, "");
  if (!/^127\.\d+\.\d+\.\d+$/.test(host) && host !== "::1" && host !== "localhost") {
    throw new TypeError(`test traffic to ${url.origin} refused: only loopback may be reached from a test; mock fetch for other destinations`);
  }
  return realFetch(input, init);
};
