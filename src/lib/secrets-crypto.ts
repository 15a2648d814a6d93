/**
 * Encryption of stored secrets: AES-256-GCM (WebCrypto) under a key derived with HKDF-SHA-256
 * from the Worker secret SECRETS_KEY. Each write draws a fresh 96-bit nonce; the scope and name
 * are the additional authenticated data, so a ciphertext only decrypts as the secret it was
 * written as. Changing SECRETS_KEY makes every stored secret undecryptable (write them again).
 */
const SALT = new TextEncoder().encode("runplane/secrets");
const INFO = new TextEncoder().encode("aes-256-gcm/v1");
const encoder = new TextEncoder();

/** Derived keys per isolate, by key material (deriving costs more than a lookup). */
const derived = new Map<string, Promise<CryptoKey>>();

function deriveKey(material: string): Promise<CryptoKey> {
  let key = derived.get(material);
  if (!key) {
    key = crypto.subtle
      .importKey("raw", encoder.encode(material), "HKDF", false, ["deriveKey"])
      .then((base) => crypto.subtle.deriveKey({ name: "HKDF", hash: "SHA-256", salt: SALT, info: INFO }, base, { name: "AES-GCM", length: 256 }, false, ["encrypt", "decrypt"]));
    derived.clear();
    derived.set(material, key);
  }
  return key;
}

const additionalData = (scope: string, name: string) => encoder.encode(`runplane-secret\u0000${scope}\u0000${name}`);

function toBase64(bytes: Uint8Array): string {
  let binary = "";
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary);
}

function fromBase64(text: string): Uint8Array<ArrayBuffer> {
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

export interface SealedSecret {
  ciphertext: string;
  iv: string;
}

export async function sealSecret(material: string, scope: string, name: string, value: string): Promise<SealedSecret> {
  const iv = crypto.getRandomValues(new Uint8Array(12));
  const key = await deriveKey(material);
  const ciphertext = await crypto.subtle.encrypt({ name: "AES-GCM", iv, additionalData: additionalData(scope, name) }, key, encoder.encode(value));
  return { ciphertext: toBase64(new Uint8Array(ciphertext)), iv: toBase64(iv) };
}

/** The secret's value; throws when the key, scope or name differ from the ones it was sealed with, or the row was altered. */
export async function openSecret(material: string, scope: string, name: string, sealed: SealedSecret): Promise<string> {
  const key = await deriveKey(material);
  const plain = await crypto.subtle.decrypt({ name: "AES-GCM", iv: fromBase64(sealed.iv), additionalData: additionalData(scope, name) }, key, fromBase64(sealed.ciphertext));
  return new TextDecoder().decode(plain);
}
