#!/usr/bin/env node
// Builds the dashboard and the API reference into dashboard/dist, the folder wrangler's
// [assets] serves from the same Worker as the API:
//   dist/dashboard/  index.html, app.js (esbuild: src/ + uPlot + the client), app.css
//   dist/docs/       Swagger UI (swagger-ui-dist) on /openapi.json
//   dist/_headers    the pages' Content-Security-Policy (self only)
// Run by `npm start`, `npm test` and `npm run deploy`; `node dashboard/build.mjs` by hand.
import { build, transform } from "esbuild";
import { copyFileSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { gzipSync } from "node:zlib";

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = join(HERE, "..");
export const DIST = join(HERE, "dist");
const nodeModule = (path) => join(ROOT, "node_modules", path);

/** The dashboard's page weight budget: its JS and CSS, gzipped (what a first visit downloads). */
export const PAGE_WEIGHT_BUDGET_BYTES = 45 * 1024;
/** What the page loads: the HTML, the script and the stylesheet. */
export const PAGE_FILES = ["dashboard/index.html", "dashboard/app.js", "dashboard/app.css"];

// Self only: no other origin may serve a script, style, font, image or connection. Styles set
// through the CSSOM (uPlot sizes its canvas so, the timeline its bars) are not inline styles.
const DASHBOARD_CSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'";
// Swagger UI writes style attributes into its markup: it needs inline styles, nothing more.
const DOCS_CSP = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'";
const COMMON_HEADERS = ["X-Content-Type-Options: nosniff", "Referrer-Policy: no-referrer"];

export async function buildAssets() {
  rmSync(DIST, { recursive: true, force: true });
  mkdirSync(join(DIST, "dashboard"), { recursive: true });
  mkdirSync(join(DIST, "docs"), { recursive: true });

  await build({
    entryPoints: [join(HERE, "src", "main.ts")],
    outfile: join(DIST, "dashboard", "app.js"),
    bundle: true,
    minify: true,
    format: "esm",
    target: "es2022",
    platform: "browser",
    legalComments: "none",
    // The client's TypeScript source, as the scripts use it (its package exports a build).
    alias: { "@runplane/client": join(ROOT, "clients", "typescript", "src", "index.ts") },
    logLevel: "warning",
  });
  const css = readFileSync(nodeModule("uplot/dist/uPlot.min.css"), "utf8") + "\n" + readFileSync(join(HERE, "styles.css"), "utf8");
  writeFileSync(join(DIST, "dashboard", "app.css"), (await transform(css, { loader: "css", minify: true })).code);
  copyFileSync(join(HERE, "index.html"), join(DIST, "dashboard", "index.html"));

  for (const file of ["swagger-ui-bundle.js", "swagger-ui.css"]) copyFileSync(nodeModule(`swagger-ui-dist/${file}`), join(DIST, "docs", file));
  copyFileSync(join(HERE, "docs", "index.html"), join(DIST, "docs", "index.html"));
  copyFileSync(join(HERE, "docs", "init.js"), join(DIST, "docs", "init.js"));

  writeFileSync(
    join(DIST, "_headers"),
    [`/dashboard/*`, `  Content-Security-Policy: ${DASHBOARD_CSP}`, ...COMMON_HEADERS.map((x) => `  ${x}`), `/docs/*`, `  Content-Security-Policy: ${DOCS_CSP}`, ...COMMON_HEADERS.map((x) => `  ${x}`), ""].join("\n"),
  );
  return pageWeight();
}

/** Each page file's size, raw and gzipped, and the gzipped total of its JS and CSS. */
export function pageWeight() {
  const files = PAGE_FILES.map((name) => {
    const bytes = readFileSync(join(DIST, name));
    return { name, bytes: bytes.length, gzipBytes: gzipSync(bytes, { level: 9 }).length };
  });
  const scriptsAndStyles = files.filter((f) => !f.name.endsWith(".html")).reduce((sum, f) => sum + f.gzipBytes, 0);
  return { files, scriptsAndStylesGzipBytes: scriptsAndStyles, budgetBytes: PAGE_WEIGHT_BUDGET_BYTES };
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  const weight = await buildAssets();
  const kb = (n) => `${(n / 1024).toFixed(1)} KB`;
  console.log(
    `[dashboard] built ${DIST.replace(ROOT + "/", "")}: ${weight.files.map((f) => `${f.name} ${kb(f.bytes)} (${kb(f.gzipBytes)} gz)`).join(", ")}; JS+CSS ${kb(weight.scriptsAndStylesGzipBytes)} gzipped of a ${kb(weight.budgetBytes)} budget`,
  );
  if (weight.scriptsAndStylesGzipBytes > weight.budgetBytes) {
    console.error(`[dashboard] over the page weight budget`);
    process.exit(1);
  }
}
