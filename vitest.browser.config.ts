import { defineConfig } from "vitest/config";

// The browser tests: Node drives Debian's Chromium (playwright-core) against a seeded
// `wrangler dev --local` of its own (test/browser/runtime.ts). They need the built assets
// (npm run build:dashboard; npm test builds them first) and /usr/bin/chromium.
export default defineConfig({
  test: {
    include: ["test/browser/**/*.test.ts"],
    environment: "node",
    testTimeout: 60_000,
    hookTimeout: 180_000,
    fileParallelism: false,
  },
});
