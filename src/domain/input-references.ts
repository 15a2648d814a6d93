/**
 * A step's config may reference the run input and earlier steps' outputs:
 *   "{{input.user.id}}"            the whole string becomes that value (any JSON type)
 *   "Hello {{steps.greet.output}}" embedded references are interpolated as text
 * Paths use dots; array elements by index ("{{steps.search.output.items.0}}").
 *
 * Secret references ("Bearer {{secrets.ACME_TOKEN}}") are not resolved here: the run object
 * leaves them as they are, and the data plane puts the value in just before the step runs
 * (src/domain/secrets.ts), so a secret is never part of a run's state, events or outputs.
 * A value taken from input or a step's output may not form a secret reference of its own:
 * otherwise whoever chooses the input could make a step send a secret it does not mention.
 */
export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };

export interface ReferenceScope {
  input: unknown;
  steps: Record<string, { output: unknown }>;
}

const WHOLE = /^\{\{\s*([a-zA-Z0-9_.-]+)\s*\}\}$/;
/** Every reference in a string; the data plane finds secret references with this same pattern. */
export const EMBEDDED = /\{\{\s*([a-zA-Z0-9_.-]+)\s*\}\}/g;

/** The first segment of a reference path that names a secret: `secrets.NAME`. */
export const SECRETS_HEAD = "secrets";
export const isSecretPath = (path: string) => path.split(".")[0] === SECRETS_HEAD;

export class UnresolvedReferenceError extends Error {
  constructor(readonly reference: string) {
    super(`reference {{${reference}}} does not resolve to a value`);
  }
}

/** A substituted value would make the data plane see a secret reference the step's config does not contain. */
export class SecretInjectionError extends Error {
  constructor(readonly reference: string | null) {
    super(
      `${reference ? `the value of {{${reference}}}` : "a value substituted into this string"} contains a secret reference ({{secrets.…}}): ` +
        "secrets may be referenced only by the step's own config, never through input or step outputs",
    );
  }
}

/** How many secret references a string holds (well-formed or not: the data plane looks at every one). */
export function countSecretReferences(text: string): number {
  let n = 0;
  for (const match of text.matchAll(EMBEDDED)) if (isSecretPath(match[1]!)) n += 1;
  return n;
}

/** Whether any string inside a JSON value holds a secret reference. */
export function containsSecretReference(value: unknown): boolean {
  if (typeof value === "string") return countSecretReferences(value) > 0;
  if (Array.isArray(value)) return value.some(containsSecretReference);
  if (value !== null && typeof value === "object") return Object.values(value).some(containsSecretReference);
  return false;
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
    if (whole) {
      if (isSecretPath(whole[1]!)) return value;
      const found = lookup(scope, whole[1]!);
      if (containsSecretReference(found)) throw new SecretInjectionError(whole[1]!);
      return found;
    }
    const result = value.replace(EMBEDDED, (match, path: string) => {
      if (isSecretPath(path)) return match;
      const found = lookup(scope, path);
      return typeof found === "string" ? found : JSON.stringify(found);
    });
    // Every secret reference of the template survives substitution intact (a reference cannot
    // contain a brace, so no substituted text can absorb one); any further one was formed by a
    // substituted value, alone or together with the text around it ("{{" + "secrets.X}}").
    if (result !== value && countSecretReferences(result) !== countSecretReferences(value)) throw new SecretInjectionError(null);
    return result;
  }
  if (Array.isArray(value)) return value.map((item) => resolveReferences(item, scope));
  if (value !== null && typeof value === "object") {
    return Object.fromEntries(
      Object.entries(value).map(([key, item]) => [key, resolveReferences(item, scope)]),
    );
  }
  return value;
}

/** Names of the steps a config refers to, to check at creation that they come earlier (secret references are not steps). */
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
