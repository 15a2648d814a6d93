#!/usr/bin/env node
// `npm run screenshots`: the README's dashboard pictures, taken from a running `npm start`
// (PORT, default 8787) with Debian's Chromium: docs/dashboard-overview.png (admin key from
// .dev.vars) and docs/dashboard-pools.png. Retake them after the dashboard changes.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { chromium } from "playwright-core";
import { ROOT } from "./lib/root.mjs";

const base = `http://127.0.0.1:${process.env.PORT ?? "8787"}`;
const adminKey = /^ADMIN_API_KEY\s*=\s*"?([^"\n]+)"?/m.exec(readFileSync(join(ROOT, ".dev.vars"), "utf8"))?.[1];
if (!adminKey) throw new Error(".dev.vars sets no ADMIN_API_KEY: run npm start first");

const browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args: ["--no-sandbox"] });
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  await page.goto(`${base}/dashboard/`);
  await page.getByLabel("API key").fill(adminKey);
  await page.keyboard.press("Enter");
  await page.locator('main[data-loaded="overview"]').waitFor();
  // Two live samples, so the live chart has a line.
  await page.locator('figure[data-chart="live-depth"][data-samples="2"]').waitFor({ timeout: 20_000 });
  await page.screenshot({ path: join(ROOT, "docs", "dashboard-overview.png"), fullPage: true });
  await page.evaluate(() => (location.hash = "#/pools"));
  await page.locator('main[data-loaded="pools"][aria-busy="false"]').waitFor();
  await page.waitForTimeout(1000);
  await page.screenshot({ path: join(ROOT, "docs", "dashboard-pools.png"), fullPage: true });
  console.log("wrote docs/dashboard-overview.png and docs/dashboard-pools.png");
} finally {
  await browser.close();
}
