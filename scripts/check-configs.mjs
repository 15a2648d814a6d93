#!/usr/bin/env node
/**
 * npm run deploy:check: the heavy pool's Worker (wrangler.heavy.toml) runs the same code as the
 * main one, so every var it sets must equal the main Worker's, and its queue and bindings must be
 * the ones src/config/pools.ts names. Exits non-zero naming each difference.
 */
import { readFileSync } from "node:fs";
import path from "node:path";
import { ROOT } from "./lib/root.mjs";

/** The few TOML shapes these files use: [table], [[array]], key = "string" | number | ["list"]. */
function parseToml(text) {
  const root = {};
  let target = root;
  for (const raw of text.split("\n")) {
    const line = raw.replace(/\s+#.*$/, "").trim();
    if (!line || line.startsWith("#")) continue;
    let m;
    if ((m = /^\[\[([\w.]+)\]\]$/.exec(line))) {
      const keys = m[1].split(".");
      let obj = root;
      for (const k of keys.slice(0, -1)) obj = obj[k] ??= {};
      (obj[keys.at(-1)] ??= []).push((target = {}));
    } else if ((m = /^\[([\w.]+)\]$/.exec(line))) {
      let obj = root;
      for (const k of m[1].split(".")) obj = obj[k] ??= {};
      target = obj;
    } else if ((m = /^([\w-]+)\s*=\s*(.+)$/.exec(line))) {
      target[m[1]] = JSON.parse(m[2]);
    }
  }
  return root;
}

const read = (file) => parseToml(readFileSync(path.join(ROOT, file), "utf8"));
const main = read("wrangler.toml");
const heavy = read("wrangler.heavy.toml");
const problems = [];
for (const [key, value] of Object.entries(heavy.vars ?? {})) {
  if (!(key in (main.vars ?? {}))) problems.push(`wrangler.heavy.toml sets ${key}, which wrangler.toml does not`);
  else if (main.vars[key] !== value) problems.push(`${key} is "${value}" in wrangler.heavy.toml but "${main.vars[key]}" in wrangler.toml`);
}
if (heavy.compatibility_date !== main.compatibility_date) problems.push(`compatibility_date differs: ${heavy.compatibility_date} against ${main.compatibility_date}`);
if (heavy.main !== main.main) problems.push(`main differs: ${heavy.main} against ${main.main}`);
const consumers = heavy.queues?.consumers ?? [];
if (consumers.length !== 1 || consumers[0].queue !== "runplane-jobs-heavy") problems.push("wrangler.heavy.toml must consume exactly runplane-jobs-heavy");
if ((main.queues?.consumers ?? []).some((c) => c.queue === "runplane-jobs-heavy")) problems.push("wrangler.toml must not consume runplane-jobs-heavy: a queue has one consumer, the heavy Worker");
for (const b of heavy.durable_objects?.bindings ?? []) {
  if (b.script_name !== main.name) problems.push(`wrangler.heavy.toml's ${b.name} must name script_name = "${main.name}" (the objects live in the main Worker)`);
}
const db = heavy.d1_databases?.[0];
if (!db || db.database_id !== main.d1_databases?.[0]?.database_id) problems.push("wrangler.heavy.toml's D1 database_id must be wrangler.toml's");
if (problems.length > 0) {
  console.error(`config check failed:\n  ${problems.join("\n  ")}`);
  process.exit(1);
}
console.log("config check: wrangler.heavy.toml agrees with wrangler.toml");
