/**
 * Which shard a key belongs to. Jump consistent hash (Lamping & Veach, 2014): keys spread
 * evenly over N shards, and growing N to N+1 moves only 1/(N+1) of them, so a shard count can
 * be raised in configuration without reshuffling every customer or pool.
 */

const MASK_64 = (1n << 64n) - 1n;
const FNV_OFFSET = 0xcbf29ce484222325n;
const FNV_PRIME = 0x100000001b3n;

/** FNV-1a, 64 bits, over the key's UTF-16 code units: stable across isolates and deploys. */
export function hash64(key: string): bigint {
  let h = FNV_OFFSET;
  for (let i = 0; i < key.length; i++) {
    h ^= BigInt(key.charCodeAt(i));
    h = (h * FNV_PRIME) & MASK_64;
  }
  return h;
}

/** The shard in [0, shards) of `key`; shards below 1 count as 1. */
export function jumpShard(key: string, shards: number): number {
  const n = Math.max(1, Math.floor(shards));
  if (n === 1) return 0;
  let k = hash64(key);
  let b = -1;
  let j = 0;
  while (j < n) {
    b = j;
    k = (k * 2862933555777941757n + 1n) & MASK_64;
    j = Math.floor(((b + 1) * 2 ** 31) / (Number(k >> 33n) + 1));
  }
  return b;
}
