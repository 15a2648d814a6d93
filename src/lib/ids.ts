const ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz";

function encode(bytes: Uint8Array): string {
  let out = "";
  for (const byte of bytes) out += ALPHABET[byte & 31];
  return out;
}

/** An opaque server-made id: a prefix and 24 random characters (120 bits). */
export function newId(prefix: string): string {
  return `${prefix}_${encode(crypto.getRandomValues(new Uint8Array(24)))}`;
}

export async function sha256Hex(text: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** The same customer and idempotency key always name the same run. */
export async function runIdForIdempotencyKey(customerId: string, key: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(`${customerId}\u0000${key}`));
  return `run_${encode(new Uint8Array(digest).slice(0, 24))}`;
}

/** A stable fingerprint of a JSON value (object keys sorted). */
export async function fingerprint(value: unknown): Promise<string> {
  const canonical = (v: unknown): unknown =>
    Array.isArray(v)
      ? v.map(canonical)
      : v !== null && typeof v === "object"
        ? Object.fromEntries(Object.keys(v).sort().map((k) => [k, canonical((v as Record<string, unknown>)[k])]))
        : v;
  return sha256Hex(JSON.stringify(canonical(value)));
}
