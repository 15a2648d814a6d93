/**
 * Secrets in step configs: `{{secrets.NAME}}` inside any string. The control plane checks the
 * names exist in the run's secret scope; the run object passes the references through
 * untouched (input-references.ts); the data plane substitutes the values just before the step
 * runs and scrubs them from whatever the step reports back.
 *
 * Scopes are tagged strings so that no customer id can name the platform's scope:
 * "platform" (Worker secrets `SECRET_<NAME>` and the secrets the admin stored) or
 * "customer:<id>" (the secrets that customer stored).
 */
import { z } from "zod";
import { CLIENT_NAME_PATTERN } from "./names";
import { EMBEDDED, isSecretPath } from "./input-references";

export const SECRET_NAME_PATTERN = /^[A-Z][A-Z0-9_]{0,63}$/;
export const SECRET_NAME_MESSAGE = "secret name must match ^[A-Z][A-Z0-9_]{0,63}$";
/** The largest secret value, in bytes of UTF-8. */
export const MAX_SECRET_VALUE_BYTES = 8 * 1024;
/** What a secret value is replaced with in a step's failure message or output. */
export const SECRET_MASK = "[secret]";

export const PLATFORM_SCOPE = "platform";
export type SecretScope = typeof PLATFORM_SCOPE | `customer:${string}`;
export const customerScope = (customerId: string): SecretScope => `customer:${customerId}`;
export const SecretScopeSchema = z
  .string()
  .refine((s) => s === PLATFORM_SCOPE || (s.startsWith("customer:") && CLIENT_NAME_PATTERN.test(s.slice("customer:".length))), "secret scope must be \"platform\" or \"customer:<id>\"")
  .transform((s) => s as SecretScope);

export function describeScope(scope: SecretScope): string {
  return scope === PLATFORM_SCOPE ? "the platform's secrets" : `customer "${scope.slice("customer:".length)}"'s secrets`;
}

export interface SecretReference {
  /** Where the string holding it sits, relative to the value walked. */
  path: (string | number)[];
  /** The name, when the reference is well-formed (`secrets.NAME`, NAME matching SECRET_NAME_PATTERN). */
  name: string | null;
  /** The reference as written, without braces. */
  reference: string;
}

/** Every secret reference inside a JSON value's strings (object keys are never resolved). */
export function secretReferences(value: unknown, path: (string | number)[] = []): SecretReference[] {
  const found: SecretReference[] = [];
  const visit = (v: unknown, at: (string | number)[]) => {
    if (typeof v === "string") {
      for (const match of v.matchAll(EMBEDDED)) {
        const reference = match[1]!;
        if (!isSecretPath(reference)) continue;
        const parts = reference.split(".");
        const name = parts.length === 2 && SECRET_NAME_PATTERN.test(parts[1]!) ? parts[1]! : null;
        found.push({ path: at, name, reference });
      }
    } else if (Array.isArray(v)) v.forEach((item, i) => visit(item, [...at, i]));
    else if (v !== null && typeof v === "object") for (const [key, item] of Object.entries(v)) visit(item, [...at, key]);
  };
  visit(value, path);
  return found;
}

/** The distinct well-formed secret names a value references. */
export function secretNames(value: unknown): string[] {
  return [...new Set(secretReferences(value).flatMap((r) => (r.name ? [r.name] : [])))];
}

export class MissingSecretError extends Error {
  constructor(readonly secret: string) {
    super(`secret "${secret}" is not available to this run`);
  }
}

/**
 * The value with each `{{secrets.NAME}}` replaced by the secret (a string; one pass, so a value
 * that itself looks like a reference stays as it is). A name not in `values` throws.
 */
export function substituteSecrets(value: unknown, values: ReadonlyMap<string, string>): unknown {
  if (typeof value === "string") {
    return value.replace(EMBEDDED, (match, reference: string) => {
      if (!isSecretPath(reference)) return match;
      const parts = reference.split(".");
      const secret = parts.length === 2 ? values.get(parts[1]!) : undefined;
      if (secret === undefined) throw new MissingSecretError(parts.slice(1).join("."));
      return secret;
    });
  }
  if (Array.isArray(value)) return value.map((item) => substituteSecrets(item, values));
  if (value !== null && typeof value === "object") {
    return Object.fromEntries(Object.entries(value).map(([key, item]) => [key, substituteSecrets(item, values)]));
  }
  return value;
}

/**
 * Each secret reference replaced by MAX_SECRET_VALUE_BYTES of text: what a step's worst case
 * (a hard budget's hold) is computed from, since the run object never sees the values.
 */
export function withSecretPlaceholders(value: unknown): unknown {
  const placeholder = "x".repeat(MAX_SECRET_VALUE_BYTES);
  if (typeof value === "string") return value.replace(EMBEDDED, (match, reference: string) => (isSecretPath(reference) ? placeholder : match));
  if (Array.isArray(value)) return value.map(withSecretPlaceholders);
  if (value !== null && typeof value === "object") return Object.fromEntries(Object.entries(value).map(([key, item]) => [key, withSecretPlaceholders(item)]));
  return value;
}

function base64(text: string): string {
  let binary = "";
  for (const byte of new TextEncoder().encode(text)) binary += String.fromCharCode(byte);
  return btoa(binary);
}

/**
 * The forms in which a secret may come back from an endpoint that echoes what it was sent: as
 * is, escaped inside JSON text, URL-encoded, base64 (a Basic credential). Longest first.
 */
function secretForms(secrets: readonly string[]): string[] {
  const forms = new Set<string>();
  for (const secret of secrets) {
    if (!secret) continue;
    forms.add(secret);
    forms.add(JSON.stringify(secret).slice(1, -1));
    forms.add(encodeURIComponent(secret));
    forms.add(base64(secret));
  }
  return [...forms].filter((f) => f.length > 0).sort((a, b) => b.length - a.length);
}

/** `value` with every occurrence of a secret (in any string, keys too) replaced by SECRET_MASK. */
export function scrubSecrets<T>(value: T, secrets: readonly string[]): T {
  const forms = secretForms(secrets);
  if (forms.length === 0) return value;
  const scrubString = (text: string) => {
    let out = text;
    for (const form of forms) if (out.includes(form)) out = out.split(form).join(SECRET_MASK);
    return out;
  };
  const visit = (v: unknown): unknown => {
    if (typeof v === "string") return scrubString(v);
    if (Array.isArray(v)) return v.map(visit);
    if (v !== null && typeof v === "object") return Object.fromEntries(Object.entries(v).map(([key, item]) => [scrubString(key), visit(item)]));
    return v;
  };
  return visit(value) as T;
}
