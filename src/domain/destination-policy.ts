/**
 * Where a step may send a request (SSRF protection for `http` and `llm` steps). Pure: the
 * caller turns the deployment's settings into a DestinationPolicy and asks about each URL
 * before it is fetched, including every redirect hop.
 *
 * Workers cannot resolve a name to its addresses before fetch, so the policy judges the URL's
 * literal host: IP literals (every spelling the URL parser accepts, which it normalises:
 * `2130706433`, `0x7f.1`, `127.1` and `[::ffff:127.0.0.1]` are all 127.0.0.1) against the
 * forbidden ranges, and names against the forbidden names. A public name that resolves to a
 * private address (DNS rebinding, `127.0.0.1.nip.io`) is not caught here: see the README.
 */

export interface AllowEntry {
  /** The entry as the operator wrote it, for messages. */
  raw: string;
  kind: "host" | "suffix" | "cidr";
  /** host: the canonical hostname (IPv6 without brackets); suffix: ".corp.example" for `*.corp.example`. */
  host?: string;
  /** The only port the entry permits; absent: 80 and 443. */
  port?: number;
  cidr?: Cidr;
}

export interface DestinationPolicy {
  /** Development: loopback (127.0.0.0/8, ::1, localhost) is allowed, on any port. */
  allowLoopback: boolean;
  /** Destinations permitted despite the address, name and port rules. */
  allowlist: readonly AllowEntry[];
  /** The Worker's own hostnames: exact names, or `*.suffix` for every name below suffix. */
  ownHostnames: readonly string[];
}

export type DestinationRule =
  | "invalid_url"
  | "scheme"
  | "userinfo"
  | "address"
  | "name"
  | "own_hostname"
  | "port";

export type DestinationVerdict =
  | { ok: true; url: URL }
  | { ok: false; rule: DestinationRule; message: string };

export const STANDARD_PORTS: readonly number[] = [80, 443];

// ---------------------------------------------------------------------------------------------
// Addresses

type Cidr = { family: 4; base: number; bits: number } | { family: 6; base: bigint; bits: number };

/** A range the policy refuses, and how a refusal says what it is. */
interface Range {
  cidr: string;
  /** Completes "<address> …", e.g. "is in a private range". */
  what: string;
  loopback?: boolean;
}

/** Most specific first where ranges nest (broadcast inside 240/4). */
const V4_RANGES: readonly Range[] = [
  { cidr: "0.0.0.0/8", what: "is in the unspecified (\"this network\") range" },
  { cidr: "10.0.0.0/8", what: "is in a private range" },
  { cidr: "100.64.0.0/10", what: "is in the shared address space (CGNAT)" },
  { cidr: "127.0.0.0/8", what: "is loopback", loopback: true },
  { cidr: "169.254.0.0/16", what: "is link-local (where cloud metadata services live)" },
  { cidr: "172.16.0.0/12", what: "is in a private range" },
  { cidr: "192.0.0.0/24", what: "is in the IETF protocol assignments range (reserved)" },
  { cidr: "192.0.2.0/24", what: "is in a documentation range" },
  { cidr: "192.88.99.0/24", what: "is in the deprecated 6to4 relay anycast range (reserved)" },
  { cidr: "192.168.0.0/16", what: "is in a private range" },
  { cidr: "198.18.0.0/15", what: "is in the benchmarking range" },
  { cidr: "198.51.100.0/24", what: "is in a documentation range" },
  { cidr: "203.0.113.0/24", what: "is in a documentation range" },
  { cidr: "224.0.0.0/4", what: "is multicast" },
  { cidr: "255.255.255.255/32", what: "is the broadcast address" },
  { cidr: "240.0.0.0/4", what: "is in a reserved range" },
];

/** IPv6 ranges that carry an IPv4 address in their low 32 bits: judged by that address. */
const V6_EMBEDDING: readonly { cidr: string; name: string; refuseAll?: boolean }[] = [
  { cidr: "::ffff:0:0/96", name: "IPv4-mapped" },
  { cidr: "::ffff:0:0:0/96", name: "IPv4-translated" },
  { cidr: "64:ff9b::/96", name: "NAT64" },
  // Deprecated; nothing legitimate uses it, so refused even around a public address.
  { cidr: "::/96", name: "IPv4-compatible", refuseAll: true },
];

const V6_RANGES: readonly Range[] = [
  { cidr: "::/128", what: "is the unspecified address" },
  { cidr: "::1/128", what: "is loopback", loopback: true },
  { cidr: "64:ff9b:1::/48", what: "is in the local-use NAT64 range (private)" },
  { cidr: "100::/64", what: "is in the discard-only range (reserved)" },
  { cidr: "2001::/32", what: "is a Teredo tunnel address (reaches an arbitrary IPv4 host)" },
  { cidr: "2001:2::/48", what: "is in the benchmarking range" },
  { cidr: "2001:db8::/32", what: "is in a documentation range" },
  { cidr: "3fff::/20", what: "is in a documentation range" },
  { cidr: "fc00::/7", what: "is unique-local (private)" },
  { cidr: "fe80::/10", what: "is link-local" },
  { cidr: "fec0::/10", what: "is site-local (deprecated, private)" },
  { cidr: "ff00::/8", what: "is multicast" },
];

/**
 * An IPv4 address in any form the WHATWG URL parser accepts: 1 to 4 dot-separated parts, each
 * decimal, octal (leading 0) or hex (0x), the last filling the remaining bytes (`127.1`,
 * `0x7f000001`, `017700000001`). Null when `host` is not an IPv4 address.
 */
export function parseIPv4(host: string): number | null {
  const parts = host.split(".");
  if (parts.length > 1 && parts[parts.length - 1] === "") parts.pop(); // one trailing dot is allowed
  if (parts.length === 0 || parts.length > 4) return null;
  const values: number[] = [];
  for (const part of parts) {
    let value: number;
    if (/^0x[0-9a-f]*$/i.test(part)) value = part.length === 2 ? 0 : parseInt(part.slice(2), 16);
    else if (/^0[0-7]+$/.test(part)) value = parseInt(part.slice(1), 8);
    else if (/^(0|[1-9][0-9]*)$/.test(part)) value = Number(part);
    else return null;
    if (!Number.isFinite(value)) return null;
    values.push(value);
  }
  const last = values.pop()!;
  if (values.some((v) => v > 255)) return null;
  if (last >= 256 ** (4 - values.length)) return null;
  let address = last;
  values.forEach((v, i) => (address += v * 256 ** (3 - i)));
  return address >>> 0;
}

/** An IPv6 address (no brackets, no zone) as a 128-bit integer; null when it is not one. */
export function parseIPv6(host: string): bigint | null {
  if (!/^[0-9a-f:.]+$/i.test(host) || !host.includes(":")) return null;
  const halves = host.split("::");
  if (halves.length > 2) return null;
  const groupsOf = (text: string): number[] | null => {
    if (text === "") return [];
    const words: number[] = [];
    const parts = text.split(":");
    for (const [i, part] of parts.entries()) {
      if (part.includes(".")) {
        // An embedded dotted IPv4 address, only as the last part: two groups.
        if (i !== parts.length - 1 || !/^\d{1,3}(\.\d{1,3}){3}$/.test(part)) return null;
        const octets = part.split(".").map(Number);
        if (octets.some((o) => o > 255)) return null;
        words.push((octets[0]! << 8) | octets[1]!, (octets[2]! << 8) | octets[3]!);
      } else if (/^[0-9a-f]{1,4}$/i.test(part)) {
        words.push(parseInt(part, 16));
      } else {
        return null;
      }
    }
    return words;
  };
  const head = groupsOf(halves[0]!);
  const tail = halves.length === 2 ? groupsOf(halves[1]!) : [];
  if (!head || !tail) return null;
  // A dotted IPv4 part may only end the address.
  if (halves.length === 2 && halves[0]!.includes(".")) return null;
  const total = head.length + tail.length;
  if (halves.length === 2 ? total > 7 : total !== 8) return null;
  const words = [...head, ...Array<number>(8 - total).fill(0), ...tail];
  return words.reduce((acc, w) => (acc << 16n) | BigInt(w), 0n);
}

export const formatIPv4 = (address: number) => [24, 16, 8, 0].map((s) => (address >>> s) & 255).join(".");

function parseCidr(text: string): Cidr | null {
  const slash = text.lastIndexOf("/");
  if (slash < 0) return null;
  const addr = text.slice(0, slash).replace(/^\[(.*)\]$/, "$1");
  const bitsText = text.slice(slash + 1);
  if (!/^\d{1,3}$/.test(bitsText)) return null;
  const bits = Number(bitsText);
  if (/^\d{1,3}(\.\d{1,3}){3}$/.test(addr)) {
    const v4 = parseIPv4(addr);
    if (v4 === null || bits > 32) return null;
    return { family: 4, base: bits === 0 ? 0 : (v4 & (~0 << (32 - bits))) >>> 0, bits };
  }
  const v6 = parseIPv6(addr);
  if (v6 === null || bits > 128) return null;
  const mask = bits === 0 ? 0n : ((1n << BigInt(bits)) - 1n) << BigInt(128 - bits);
  return { family: 6, base: v6 & mask, bits };
}

function cidrContains(cidr: Cidr, address: number | bigint, family: 4 | 6): boolean {
  if (cidr.family !== family) return false;
  if (cidr.family === 4) {
    if (cidr.bits === 0) return true;
    const mask = (~0 << (32 - cidr.bits)) >>> 0;
    return ((Number(address) & mask) >>> 0) === cidr.base;
  }
  const mask = cidr.bits === 0 ? 0n : ((1n << BigInt(cidr.bits)) - 1n) << BigInt(128 - cidr.bits);
  return (BigInt(address) & mask) === cidr.base;
}

const compile = <T extends { cidr: string }>(list: readonly T[]) => list.map((r) => ({ ...r, parsed: parseCidr(r.cidr)! }));
const V4 = compile(V4_RANGES);
const V6 = compile(V6_RANGES);
const V6_EMBED = compile(V6_EMBEDDING);

interface HostVerdict {
  forbidden: boolean;
  loopback: boolean;
  /** Completes "<host> …" when forbidden. */
  what?: string;
}

function judgeIPv4(address: number): HostVerdict {
  const range = V4.find((r) => cidrContains(r.parsed, address, 4));
  if (!range) return { forbidden: false, loopback: false };
  return { forbidden: true, loopback: !!range.loopback, what: `${range.what} (${range.cidr})` };
}

function judgeIPv6(address: bigint): HostVerdict {
  const exact = V6.find((r) => r.parsed.bits === 128 && cidrContains(r.parsed, address, 6));
  if (exact) return { forbidden: true, loopback: !!exact.loopback, what: `${exact.what} (${exact.cidr})` };
  const embedding = V6_EMBED.find((r) => cidrContains(r.parsed, address, 6));
  if (embedding) {
    const v4 = Number(address & 0xffffffffn) >>> 0;
    const inner = judgeIPv4(v4);
    if (inner.forbidden) {
      return { forbidden: true, loopback: inner.loopback, what: `is an ${embedding.name} address of ${formatIPv4(v4)}, which ${inner.what}` };
    }
    if (embedding.refuseAll) return { forbidden: true, loopback: false, what: `is a deprecated ${embedding.name} address (${embedding.cidr})` };
    return { forbidden: false, loopback: false };
  }
  // 6to4 (2002::/16) carries an IPv4 address in bits 16-47.
  if (address >> 112n === 0x2002n) {
    const v4 = Number((address >> 80n) & 0xffffffffn) >>> 0;
    const inner = judgeIPv4(v4);
    if (inner.forbidden) return { forbidden: true, loopback: false, what: `is a 6to4 address of ${formatIPv4(v4)}, which ${inner.what}` };
  }
  const range = V6.find((r) => cidrContains(r.parsed, address, 6));
  if (!range) return { forbidden: false, loopback: false };
  return { forbidden: true, loopback: !!range.loopback, what: `${range.what} (${range.cidr})` };
}

// ---------------------------------------------------------------------------------------------
// Names

/** Forbidden names: exact, or every name below a suffix (".local"); first match names the rule. */
const NAMES: readonly { exact?: string; suffix?: string; what: string; loopback?: boolean }[] = [
  { exact: "localhost", what: "is a loopback name (localhost)", loopback: true },
  { suffix: ".localhost", what: "is a loopback name (*.localhost)", loopback: true },
  { exact: "metadata.google.internal", what: "is a cloud metadata service name" },
  { exact: "metadata.goog", what: "is a cloud metadata service name" },
  { suffix: ".internal", what: "is a private-use name (*.internal)" },
  { suffix: ".local", what: "is a local-network (mDNS) name (*.local)" },
  { suffix: ".localdomain", what: "is a local-network name (*.localdomain)" },
  { suffix: ".home.arpa", what: "is a home-network name (*.home.arpa)" },
];

/** Lower case, no brackets, no trailing dots: how hosts are compared. */
export function canonicalHost(hostname: string): string {
  return hostname.toLowerCase().replace(/^\[(.*)\]$/, "$1").replace(/\.+$/, "");
}

const matchesPattern = (host: string, pattern: string) => {
  const p = canonicalHost(pattern);
  return p.startsWith("*.") ? host.endsWith(p.slice(1)) && host.length > p.length - 1 : host === p;
};

function judgeName(host: string, policy: DestinationPolicy): (HostVerdict & { rule: DestinationRule }) | null {
  for (const n of NAMES) {
    if (n.exact ? host === n.exact : host.endsWith(n.suffix!) || host === n.suffix!.slice(1)) {
      return { forbidden: true, loopback: !!n.loopback, what: n.what, rule: "name" };
    }
  }
  if (policy.ownHostnames.some((pattern) => pattern.trim() && matchesPattern(host, pattern.trim()))) {
    return { forbidden: true, loopback: false, what: "is this Worker's own hostname", rule: "own_hostname" };
  }
  if (!host.includes(".")) return { forbidden: true, loopback: false, what: "is a single-label name (not a public host)", rule: "name" };
  return null;
}

/** What a host is: an IPv4 or IPv6 literal (judged by range), or a name. */
function classify(host: string): { family: 4; address: number } | { family: 6; address: bigint } | { family: 0 } {
  const v6 = host.includes(":") ? parseIPv6(host) : null;
  if (v6 !== null) return { family: 6, address: v6 };
  const v4 = parseIPv4(host);
  if (v4 !== null) return { family: 4, address: v4 };
  return { family: 0 };
}

// ---------------------------------------------------------------------------------------------
// The allowlist

/**
 * DESTINATION_ALLOWLIST: comma-separated entries, each `host` (that host on ports 80 and 443),
 * `host:port` (that host on that port only), `*.suffix[:port]` (every name below suffix), or a
 * CIDR range `10.1.0.0/16` / `fd00::/8` (IP literals in it, on ports 80 and 443). Entries that
 * parse as none of these are returned in `invalid` and permit nothing.
 */
export function parseAllowlist(raw: string | undefined): { entries: AllowEntry[]; invalid: string[] } {
  const entries: AllowEntry[] = [];
  const invalid: string[] = [];
  for (const item of (raw ?? "").split(",")) {
    const text = item.trim();
    if (!text) continue;
    const entry = parseAllowEntry(text);
    if (entry) entries.push(entry);
    else invalid.push(text);
  }
  return { entries, invalid };
}

function parseAllowEntry(text: string): AllowEntry | null {
  if (text.includes("/")) {
    const cidr = parseCidr(text);
    return cidr ? { raw: text, kind: "cidr", cidr } : null;
  }
  let hostPart = text;
  let port: number | undefined;
  // A bare IPv6 address ("fd00::1", "fd00:0:0:0:0:0:0:1") has colons but no port; a bracketed one may have a port.
  const withPort = parseIPv6(text) === null ? /^(.*):(\d{1,5})$/.exec(text) : null;
  if (withPort) {
    hostPart = withPort[1]!;
    port = Number(withPort[2]);
    if (port < 1 || port > 65535) return null;
  }
  if (port !== undefined && STANDARD_PORTS.includes(port)) port = undefined;
  if (hostPart.startsWith("*.")) {
    const suffix = canonicalHost(hostPart.slice(1));
    if (!/^(\.[a-z0-9_-]+)+$/.test(suffix)) return null;
    return { raw: text, kind: "suffix", host: suffix, ...(port === undefined ? {} : { port }) };
  }
  if (!hostPart.startsWith("[") && parseIPv6(hostPart) !== null) hostPart = `[${hostPart}]`;
  let url: URL;
  try {
    url = new URL(`http://${hostPart}/`);
  } catch {
    return null;
  }
  if (url.username || url.password || url.port || url.pathname !== "/" || url.search || url.hash || !url.hostname) return null;
  return { raw: text, kind: "host", host: canonicalHost(url.hostname), ...(port === undefined ? {} : { port }) };
}

const entryMatchesHost = (entry: AllowEntry, host: string, ip: ReturnType<typeof classify>) => {
  if (entry.kind === "host") return entry.host === host;
  if (entry.kind === "suffix") return host.endsWith(entry.host!) && host.length > entry.host!.length;
  return ip.family !== 0 && cidrContains(entry.cidr!, ip.address, ip.family);
};

const entryMatchesPort = (entry: AllowEntry, port: number) => (entry.port === undefined ? STANDARD_PORTS.includes(port) : entry.port === port);

// ---------------------------------------------------------------------------------------------
// The verdict

const refuse = (rule: DestinationRule, message: string): DestinationVerdict => ({ ok: false, rule, message: `destination refused: ${message}` });

/**
 * Whether a step may send a request to `target`. The URL is parsed (and so normalised) here;
 * fetch the returned `url`, not the original string, so what was judged is what is fetched.
 * Messages name the host and port, never the path or query (they may carry tokens).
 */
export function checkDestination(target: string | URL, policy: DestinationPolicy): DestinationVerdict {
  let url: URL;
  try {
    url = new URL(String(target));
  } catch {
    return refuse("invalid_url", "not an absolute URL");
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    return refuse("scheme", `scheme "${url.protocol.replace(/:$/, "")}" is not allowed (only http and https)`);
  }
  if (url.username || url.password) {
    return refuse("userinfo", "URLs with credentials in them (user:password@host) are not allowed; send credentials in a header");
  }
  const host = canonicalHost(url.hostname);
  if (!host) return refuse("invalid_url", "the URL has no host");
  const port = url.port ? Number(url.port) : url.protocol === "https:" ? 443 : 80;
  const ip = classify(host);

  const listed = policy.allowlist.filter((entry) => entryMatchesHost(entry, host, ip));
  if (listed.some((entry) => entryMatchesPort(entry, port))) return { ok: true, url };
  if (listed.length > 0) {
    // The host is listed, only not for this port: that is what to say.
    return refuse("port", `port ${port} of ${host} is not allowed (DESTINATION_ALLOWLIST lists ${host} only as ${listed.map((e) => e.raw).join(", ")})`);
  }

  const verdict: (HostVerdict & { rule?: DestinationRule }) | null =
    ip.family === 4 ? judgeIPv4(ip.address) : ip.family === 6 ? judgeIPv6(ip.address) : judgeName(host, policy);
  if (verdict?.forbidden) {
    if (policy.allowLoopback && verdict.loopback) return { ok: true, url };
    return refuse(verdict.rule ?? "address", `${host} ${verdict.what}`);
  }
  if (!STANDARD_PORTS.includes(port)) {
    return refuse("port", `port ${port} of ${host} is not allowed (only 80 and 443; DESTINATION_ALLOWLIST can permit host:port)`);
  }
  return { ok: true, url };
}
