import type { z } from "zod";

/**
 * How deeply free-form JSON (run input, metadata, step config) may nest. A 1 MiB body can nest
 * hundreds of thousands of levels, which JSON.parse takes but every recursive walk after it
 * (fingerprints, reference checks, RPC serialisation, JSON.stringify) overflows the stack on.
 */
export const MAX_JSON_DEPTH = 64;

/** True when `value` has objects or arrays nested more than `limit` levels; walks without recursion. */
export function exceedsJsonDepth(value: unknown, limit = MAX_JSON_DEPTH): boolean {
  const stack: [unknown, number][] = [[value, 1]];
  while (stack.length > 0) {
    const [item, depth] = stack.pop()!;
    if (item === null || typeof item !== "object") continue;
    if (depth > limit) return true;
    for (const child of Object.values(item)) stack.push([child, depth + 1]);
  }
  return false;
}

export const TOO_DEEP_MESSAGE = `nested more than ${MAX_JSON_DEPTH} levels deep`;

/** A zod check for free-form JSON fields: a 400 naming the field instead of a crash later. */
export function refineJsonDepth(value: unknown, ctx: z.RefinementCtx): void {
  if (exceedsJsonDepth(value)) ctx.addIssue({ code: "custom", message: TOO_DEEP_MESSAGE });
}
