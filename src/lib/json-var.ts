/**
 * A deployment setting that holds JSON (LEDGER_SUBSHARDS, POOL_SHARDS): parsed and checked by
 * `schema`, absent or empty as `empty`. An unusable value comes back as a sentence naming the
 * setting and the fault, which the platform reports as a misconfiguration (503 on /v1, named
 * by /health) rather than guessing.
 */
import type { z } from "zod";

/** Parsed settings by name and text: they are read on every request and dispatch, and change only with a deploy. */
const parsedByText = new Map<string, unknown>();

export function parseJsonVar<S extends z.ZodType>(name: string, raw: unknown, schema: S, empty: z.output<S>, expected: string): z.output<S> | string {
  const text = String(raw ?? "").trim();
  if (text === "") return empty;
  const key = `${name}\u0000${text}`;
  if (parsedByText.has(key)) return parsedByText.get(key) as z.output<S> | string;
  const result = parseUncached(name, text, schema, expected);
  parsedByText.set(key, result);
  return result;
}

function parseUncached<S extends z.ZodType>(name: string, text: string, schema: S, expected: string): z.output<S> | string {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    return `${name} is not JSON; it must be ${expected}`;
  }
  const parsed = schema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    return `${name} ${issue.path.length ? `"${issue.path.join(".")}"` : ""}: ${issue.message}; it must be ${expected}`;
  }
  return parsed.data;
}
