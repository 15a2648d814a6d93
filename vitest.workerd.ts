/**
 * The workerd test configuration, shared by the main suite (vitest.config.ts) and the suites that
 * need other deployment settings (vitest.sharded.config.ts): one workerd per suite, each with the
 * real bindings from wrangler.toml, the test settings below and the suite's own on top.
 */
import { cloudflareTest, readD1Migrations } from "@cloudflare/vitest-pool-workers";
import path from "node:path";
import { configDefaults, defineConfig } from "vitest/config";

const migrations = await readD1Migrations(path.join(import.meta.dirname, "migrations"));

export function workerdTestConfig(options: { include?: string[]; exclude?: string[]; bindings?: Record<string, string> } = {}) {
  return defineConfig({
    plugins: [
      cloudflareTest({
        wrangler: { configPath: "./wrangler.toml" },
        miniflare: {
          bindings: {
            ADMIN_API_KEY: "test-admin-key",
            RUNPLANE_ENV: "test",
            LEASE_MS: "2000",
            INLINE_STEP_LIMIT: "16",
            ALERT_WEBHOOK_URL: "http://127.0.0.1:9/alerts",
            // Every price change is seen at once.
            PRICE_CACHE_MS: "0",
            FIXED_MONTHLY_COST_USD: "100",
            FIXED_COST_ALLOCATION: "even",
            // Stored secrets are encrypted under this; SECRET_WORKER_TOKEN is a platform secret set on the Worker.
            SECRETS_KEY: "test-secrets-key-0123456789abcdef0123456789",
            SECRET_WORKER_TOKEN: "worker-token-value-5f1c",
            // Pool controllers sample (and flush decisions to D1) every 200 ms while active, so tests see them soon.
            POOL_SAMPLE_MS: "200",
            // test/integration/ledger-subshards.test.ts: these customers' costs go to cost sub-ledgers (ids no other file uses).
            LEDGER_SUBSHARDS: JSON.stringify({ "hot-spread": 4, "hot-budget": 3, "hot-direct": 4 }),
            TEST_MIGRATIONS: migrations,
            ...options.bindings,
          },
          queueConsumers: {
            "runplane-jobs-standard": { maxBatchSize: 100, maxBatchTimeout: 0, maxRetries: 3, deadLetterQueue: "runplane-dlq-standard" },
            "runplane-dlq-standard": { maxBatchSize: 10, maxBatchTimeout: 0.05, maxRetries: 10 },
            // On Cloudflare the heavy pool's queue has its own Worker (wrangler.heavy.toml); in tests this one consumes it.
            "runplane-jobs-heavy": { maxBatchSize: 1, maxBatchTimeout: 0, maxRetries: 3, deadLetterQueue: "runplane-dlq-heavy" },
            "runplane-dlq-heavy": { maxBatchSize: 10, maxBatchTimeout: 0.05, maxRetries: 10 },
            "runplane-events": { maxBatchSize: 100, maxBatchTimeout: 0.05, maxRetries: 10, deadLetterQueue: "runplane-events-dlq" },
            "runplane-events-dlq": { maxBatchSize: 10, maxBatchTimeout: 0.05, maxRetries: 10 },
          },
        },
      }),
    ],
    test: {
      setupFiles: ["./test/setup.ts"],
      // The browser tests drive Chromium from Node against a local runtime: vitest.browser.config.ts.
      ...(options.include ? { include: options.include } : {}),
      exclude: [...configDefaults.exclude, "test/browser/**", ...(options.exclude ?? [])],
      testTimeout: 30_000,
      // Structured logs of passing tests are noise; a failing test still shows its logs.
      silent: "passed-only",
    },
  });
}
