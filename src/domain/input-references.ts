/**
 * A step's config may reference the run input and earlier steps' outputs:
 *   "{{input.user.id}}"            the whole string becomes that value (any JSON type)
 *   "Hello {{steps.greet.output}}" embedded references are interpolated as text
 * Paths use dots; array elements by index ("{{steps.search.output.items.0}}").
 */
export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };

export interface ReferenceScope {
  input: unknown;
  steps: Record<string, { output: unknown }>;
}

const WHOLE = /^\{\{\s*([a-zA-Z0-9_.-]+)\s*\}\}$/;
const EMBEDDED = /\{\{\s*([a-zA-Z0-9_.-]+)\s*\}\}/g;

export class UnresolvedReferenceError extends Error {
  constructor(readonly reference: string) {
    super(`reference {{${reference}}} does not resolve to a value`);
  }
}

function lookup(scope: ReferenceScope, path: string): unknown {
  let value: unknown = scope;
  for (const part of path.split(".")) {
    if (value === null || typeof value !== "object" || !Object.hasOwn(value, part)) {
      throw new UnresolvedReferenceError(path);
    }
    value = (value as Record<string, unknown>)[part];
  }
  return value;
}

export function resolveReferences(value: unknown, scope: ReferenceScope): unknown {
  if (typeof value === "string") {
    const whole = WHOLE.exec(value);
    if (whole) return lookup(scope, whole[1]!);
    return value.replace(EMBEDDED, (_, path: string) => {
      const found = lookup(scope, path);
      return typeof found === "string" ? found : JSON.stringify(found);
    });
  }
  if (Array.isArray(value)) return value.map((item) => resolveReferences(item, scope));
  if (value !== null && typeof value === "object") {
    return Object.fromEntries(
      Object.entries(value).map(([key, item]) => [key, resolveReferences(item, scope)]),
    );
  }
  return value;
}

/** Names of the steps a config refers to, to check at creation that they come earlier. */
export function referencedSteps(value: unknown): string[] {
  const found = new Set<string>();
  const visit = (v: unknown) => {
    if (typeof v === "string") {
      for (const match of v.matchAll(EMBEDDED)) {
        const [head, name] = match[1]!.split(".");
        if (head === "steps" && name) found.add(name);
      }
    } else if (Array.isArray(v)) v.forEach(visit);
    else if (v !== null && typeof v === "object") Object.values(v).forEach(visit);
  };
  visit(value);
  return [...found];
}
