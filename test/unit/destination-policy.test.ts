import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  checkDestination,
  formatIPv4,
  parseAllowlist,
  parseIPv4,
  parseIPv6,
  type DestinationPolicy,
} from "../../src/domain/destination-policy";

const PRODUCTION: DestinationPolicy = { allowLoopback: false, allowlist: [], ownHostnames: [] };
const DEVELOPMENT: DestinationPolicy = { ...PRODUCTION, allowLoopback: true };
const withAllowlist = (raw: string, base: DestinationPolicy = PRODUCTION): DestinationPolicy => ({ ...base, allowlist: parseAllowlist(raw).entries });

/** The refusal message, or "allowed". */
const verdict = (url: string, policy: DestinationPolicy = PRODUCTION) => {
  const v = checkDestination(url, policy);
  return v.ok ? "allowed" : v.message;
};
const ruleOf = (url: string, policy: DestinationPolicy = PRODUCTION) => {
  const v = checkDestination(url, policy);
  return v.ok ? "allowed" : v.rule;
};

const v4 = (text: string) => parseIPv4(text)!;

describe("IPv4 ranges: first and last address refused, the neighbours outside allowed", () => {
  // [cidr, phrase in the message, last address, address just before, address just after]
  const ranges: [string, string, string, string | null, string | null][] = [
    ["0.0.0.0/8", "unspecified", "0.255.255.255", null, "1.0.0.0"],
    ["10.0.0.0/8", "private range", "10.255.255.255", "9.255.255.255", "11.0.0.0"],
    ["100.64.0.0/10", "shared address space (CGNAT)", "100.127.255.255", "100.63.255.255", "100.128.0.0"],
    ["127.0.0.0/8", "loopback", "127.255.255.255", "126.255.255.255", "128.0.0.0"],
    ["169.254.0.0/16", "link-local", "169.254.255.255", "169.253.255.255", "169.255.0.0"],
    ["172.16.0.0/12", "private range", "172.31.255.255", "172.15.255.255", "172.32.0.0"],
    ["192.0.0.0/24", "IETF protocol assignments", "192.0.0.255", "191.255.255.255", "192.0.1.0"],
    ["192.0.2.0/24", "documentation range", "192.0.2.255", "192.0.1.255", "192.0.3.0"],
    ["192.88.99.0/24", "6to4 relay anycast", "192.88.99.255", "192.88.98.255", "192.88.100.0"],
    ["192.168.0.0/16", "private range", "192.168.255.255", "192.167.255.255", "192.169.0.0"],
    ["198.18.0.0/15", "benchmarking range", "198.19.255.255", "198.17.255.255", "198.20.0.0"],
    ["198.51.100.0/24", "documentation range", "198.51.100.255", "198.51.99.255", "198.51.101.0"],
    ["203.0.113.0/24", "documentation range", "203.0.113.255", "203.0.112.255", "203.0.114.0"],
    ["224.0.0.0/4", "multicast", "239.255.255.255", "223.255.255.255", null],
    ["240.0.0.0/4", "reserved range", "255.255.255.254", null, null],
    ["255.255.255.255/32", "broadcast address", "255.255.255.255", null, null],
  ];
  it.each(ranges)("%s", (cidr, phrase, last, before, after) => {
    const first = cidr.split("/")[0]!;
    for (const address of [first, last]) {
      const message = verdict(`http://${address}/x`);
      expect(message).toContain(`destination refused: ${address} `);
      expect(message).toContain(phrase);
      expect(message).toContain(`(${cidr})`);
      expect(ruleOf(`http://${address}/`)).toBe("address");
    }
    // Neighbours are either public (allowed) or in the adjacent range, never in this one.
    for (const address of [before, after]) if (address) expect(verdict(`http://${address}/`)).not.toContain(`(${cidr})`);
  });

  it("names the rule exactly", () => {
    expect(verdict("http://10.0.0.5/")).toBe("destination refused: 10.0.0.5 is in a private range (10.0.0.0/8)");
    expect(verdict("http://169.254.169.254/latest/meta-data")).toBe(
      "destination refused: 169.254.169.254 is link-local (where cloud metadata services live) (169.254.0.0/16)",
    );
  });

  it("allows public addresses", () => {
    for (const address of ["1.1.1.1", "8.8.8.8", "9.255.255.255", "11.0.0.0", "100.63.255.255", "172.32.0.1", "192.169.0.1", "223.255.255.255"]) {
      expect(verdict(`https://${address}/`)).toBe("allowed");
    }
  });

  it("never names the path or query in a refusal", () => {
    expect(verdict("http://10.0.0.5/secret-path?token=abc")).not.toMatch(/secret-path|token|abc/);
  });
});

describe("IPv6 ranges", () => {
  const cases: [string, string][] = [
    ["[::]", "is the unspecified address (::/128)"],
    ["[::1]", "is loopback (::1/128)"],
    ["[0:0:0:0:0:0:0:1]", "is loopback (::1/128)"],
    ["[fe80::1]", "is link-local (fe80::/10)"],
    ["[febf:ffff::1]", "is link-local (fe80::/10)"],
    ["[fc00::1]", "is unique-local (private) (fc00::/7)"],
    ["[fd12:3456::1]", "is unique-local (private) (fc00::/7)"],
    ["[fec0::1]", "is site-local"],
    ["[ff02::1]", "is multicast (ff00::/8)"],
    ["[2001:db8::1]", "is in a documentation range (2001:db8::/32)"],
    ["[3fff::1]", "is in a documentation range (3fff::/20)"],
    ["[100::1]", "is in the discard-only range"],
    ["[2001::1]", "is a Teredo tunnel address"],
    ["[2001:2::1]", "is in the benchmarking range"],
    ["[64:ff9b:1::1]", "is in the local-use NAT64 range"],
  ];
  it.each(cases)("%s", (host, what) => {
    const message = verdict(`http://${host}/`);
    expect(message).toMatch(/^destination refused: /);
    expect(message).toContain(what);
  });

  it("judges IPv4-mapped, -translated, -compatible, NAT64 and 6to4 addresses by the IPv4 address inside", () => {
    expect(verdict("http://[::ffff:127.0.0.1]/")).toBe(
      "destination refused: ::ffff:7f00:1 is an IPv4-mapped address of 127.0.0.1, which is loopback (127.0.0.0/8)",
    );
    expect(verdict("http://[::ffff:7f00:1]/")).toContain("IPv4-mapped address of 127.0.0.1");
    expect(verdict("http://[0:0:0:0:0:ffff:10.0.0.5]/")).toContain("IPv4-mapped address of 10.0.0.5, which is in a private range (10.0.0.0/8)");
    expect(verdict("http://[::ffff:169.254.169.254]/")).toContain("link-local");
    expect(verdict("http://[::ffff:0:192.168.1.1]/")).toContain("IPv4-translated address of 192.168.1.1");
    expect(verdict("http://[::127.0.0.1]/")).toContain("IPv4-compatible address of 127.0.0.1, which is loopback");
    expect(verdict("http://[::8.8.8.8]/")).toContain("deprecated IPv4-compatible address (::/96)");
    expect(verdict("http://[64:ff9b::10.0.0.1]/")).toContain("NAT64 address of 10.0.0.1");
    expect(verdict("http://[2002:a00:1::1]/")).toContain("6to4 address of 10.0.0.1");
    // The same wrappers around a public address are allowed.
    expect(verdict("http://[::ffff:8.8.8.8]/")).toBe("allowed");
    expect(verdict("http://[64:ff9b::8.8.8.8]/")).toBe("allowed");
    expect(verdict("http://[2002:808:808::1]/")).toBe("allowed");
  });

  it("allows public IPv6 addresses", () => {
    expect(verdict("https://[2606:4700:4700::1111]/")).toBe("allowed");
    expect(verdict("https://[2a00:1450:4001::200e]/")).toBe("allowed");
  });
});

describe("encodings of an address", () => {
  it("refuses every spelling of 127.0.0.1 the URL parser accepts", () => {
    for (const url of [
      "http://2130706433/",
      "http://0x7f000001/",
      "http://017700000001/",
      "http://0x7f.1/",
      "http://127.1/",
      "http://127.0.1/",
      "http://0177.0.0.1/",
      "http://0x7f.0x0.0x0.0x1/",
      "http://127.000.000.001/",
      "http://127.0.0.1./",
      "http://[::ffff:127.0.0.1]/",
      "http://[0000:0000:0000:0000:0000:ffff:7f00:0001]/",
    ]) {
      expect(verdict(url), url).toMatch(/^destination refused: .*loopback \(127\.0\.0\.0\/8\)$/);
    }
    expect(verdict("http://0/")).toContain("0.0.0.0 is in the unspecified");
    expect(verdict("http://0xa9fea9fe/")).toContain("169.254.169.254 is link-local");
  });

  it("fetches the normalised URL it judged", () => {
    const v = checkDestination("https://0x08.0x08.0x08.0x08/a?b", PRODUCTION);
    expect(v.ok && v.url.href).toBe("https://8.8.8.8/a?b");
  });

  it("parseIPv4 follows the URL standard's IPv4 parser", () => {
    expect(parseIPv4("127.0.0.1")).toBe(0x7f000001);
    expect(parseIPv4("127.1")).toBe(0x7f000001);
    expect(parseIPv4("127.0.1")).toBe(0x7f000001);
    expect(parseIPv4("0x7f.1")).toBe(0x7f000001);
    expect(parseIPv4("2130706433")).toBe(0x7f000001);
    expect(parseIPv4("017700000001")).toBe(0x7f000001);
    expect(parseIPv4("0x")).toBe(0);
    expect(parseIPv4("1.2.3.4.")).toBe(0x01020304);
    for (const bad of ["1.2.3.4.5", "1.2.3.256", "256.1", "4294967296", "1.16777216", "08", "0x1g", "abc", "", "1..2", "example.com", "1.2.3.-4"]) {
      expect(parseIPv4(bad), bad).toBeNull();
    }
  });

  it("parseIPv6 reads compressed, full and dotted forms and refuses malformed ones", () => {
    expect(parseIPv6("::")).toBe(0n);
    expect(parseIPv6("::1")).toBe(1n);
    expect(parseIPv6("1::")).toBe(1n << 112n);
    expect(parseIPv6("1:2:3:4:5:6:7:8")).toBe(0x00010002000300040005000600070008n);
    expect(parseIPv6("::ffff:1.2.3.4")).toBe(0xffff01020304n);
    expect(parseIPv6("::ffff:102:304")).toBe(0xffff01020304n);
    for (const bad of ["1:2:3:4:5:6:7:8:9", "1::2::3", "1.2.3.4::", "12345::", ":1", "1:", "1:2:3:4:5:6:7", "::1.2.3", "::g", "1.2.3.4", "", "::1.2.3.4:5"]) {
      expect(parseIPv6(bad), bad).toBeNull();
    }
  });

  it("property: every spelling of an IPv4 address gets the verdict of its dotted form", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 0xffffffff }), (address) => {
        const dotted = formatIPv4(address);
        const expected = verdict(`http://${dotted}/`);
        const [a, b, c, d] = dotted.split(".").map(Number) as [number, number, number, number];
        const spellings = [
          String(address),
          `0x${address.toString(16)}`,
          `0${address.toString(8)}`,
          `${a}.${(b << 16) | (c << 8) | d}`,
          `${a}.${b}.${(c << 8) | d}`,
          [a, b, c, d].map((o) => `0x${o.toString(16)}`).join("."),
          [a, b, c, d].map((o) => `0${o.toString(8)}`).join("."),
        ];
        for (const spelling of spellings) {
          expect(parseIPv4(spelling)).toBe(address);
          expect(verdict(`http://${spelling}/`)).toBe(expected);
        }
        // Mapped into IPv6, refused exactly when the IPv4 address is.
        expect(verdict(`http://[::ffff:${dotted}]/`) === "allowed").toBe(expected === "allowed");
      }),
      { numRuns: 500 },
    );
  });

  it("property: a random address is refused exactly when it lies in one of the listed ranges", () => {
    const ranges = ["0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12", "192.0.0.0/24", "192.0.2.0/24", "192.88.99.0/24", "192.168.0.0/16", "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4"].map((c) => {
      const [base, bits] = c.split("/");
      return { base: v4(base!), bits: Number(bits) };
    });
    const inRanges = (a: number) => ranges.some((r) => a >>> (32 - r.bits) === r.base >>> (32 - r.bits));
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 0xffffffff }), (address) => {
        expect(verdict(`http://${formatIPv4(address)}/`) !== "allowed").toBe(inRanges(address));
      }),
      { numRuns: 2000 },
    );
  });
});

describe("names", () => {
  it.each([
    ["localhost", "is a loopback name (localhost)"],
    ["LOCALHOST", "is a loopback name (localhost)"],
    ["localhost.", "is a loopback name (localhost)"],
    ["%6c%6fcalhost", "is a loopback name (localhost)"],
    ["ｌｏｃａｌｈｏｓｔ", "is a loopback name (localhost)"],
    ["app.localhost", "is a loopback name (*.localhost)"],
    ["metadata.google.internal", "is a cloud metadata service name"],
    ["metadata.goog", "is a cloud metadata service name"],
    ["db.internal", "is a private-use name (*.internal)"],
    ["instance-data.ec2.internal", "is a private-use name (*.internal)"],
    ["printer.local", "is a local-network (mDNS) name (*.local)"],
    ["box.localdomain", "is a local-network name (*.localdomain)"],
    ["nas.home.arpa", "is a home-network name (*.home.arpa)"],
    ["intranet", "is a single-label name"],
  ])("%s is refused", (host, what) => {
    const message = verdict(`https://${host}/`);
    expect(message).toMatch(/^destination refused: /);
    expect(message).toContain(what);
    expect(ruleOf(`https://${host}/`)).toBe("name");
  });

  it("allows public names, including ones that merely contain a forbidden word", () => {
    for (const host of ["api.example", "remote.example", "llm.example", "api.openai.com", "localhost.example.com", "internal.example.com", "local.example.org", "mylocal.dev", "xn--e1afmkfd.xn--p1ai"]) {
      expect(verdict(`https://${host}/`), host).toBe("allowed");
    }
  });

  it("refuses the Worker's own hostnames: exact names and *.suffix patterns", () => {
    const policy = { ...PRODUCTION, ownHostnames: ["runplane.example.com", "*.acme.workers.dev"] };
    expect(verdict("https://runplane.example.com/v1/runs", policy)).toBe("destination refused: runplane.example.com is this Worker's own hostname");
    expect(verdict("https://RUNPLANE.example.com./", policy)).toContain("own hostname");
    expect(ruleOf("https://runplane.acme.workers.dev/", policy)).toBe("own_hostname");
    expect(verdict("https://api.runplane.example.com/", policy)).toBe("allowed");
    expect(verdict("https://acme.workers.dev/", policy)).toBe("allowed");
    expect(verdict("https://other.someone.workers.dev/", policy)).toBe("allowed");
    expect(verdict("https://runplane.example.com/", PRODUCTION)).toBe("allowed");
  });
});

describe("schemes, credentials and ports", () => {
  it("refuses schemes other than http and https", () => {
    for (const url of ["ftp://api.example/", "file:///etc/passwd", "gopher://api.example/", "ws://api.example/", "data:text/plain,hi", "javascript:alert(1)"]) {
      expect(ruleOf(url), url).toBe("scheme");
      expect(verdict(url)).toMatch(/^destination refused: scheme ".+" is not allowed \(only http and https\)$/);
    }
    expect(ruleOf("not a url")).toBe("invalid_url");
    expect(ruleOf("/relative")).toBe("invalid_url");
  });

  it("refuses credentials in the URL, without repeating them", () => {
    for (const url of ["http://user:hunter2@api.example/", "http://user@api.example/", "https://:hunter2@api.example/"]) {
      expect(ruleOf(url), url).toBe("userinfo");
      expect(verdict(url)).not.toContain("hunter2");
    }
    // Not even the allowlist permits them.
    expect(ruleOf("http://user:pw@10.0.0.5/", withAllowlist("10.0.0.5"))).toBe("userinfo");
  });

  it("allows 80 and 443 with either scheme, and refuses every other port", () => {
    expect(verdict("http://api.example/")).toBe("allowed");
    expect(verdict("https://api.example/")).toBe("allowed");
    expect(verdict("http://api.example:443/")).toBe("allowed");
    expect(verdict("https://api.example:80/")).toBe("allowed");
    expect(verdict("https://api.example:8080/")).toBe(
      "destination refused: port 8080 of api.example is not allowed (only 80 and 443; DESTINATION_ALLOWLIST can permit host:port)",
    );
    for (const port of [1, 22, 25, 81, 444, 6379, 8443, 65535]) expect(ruleOf(`http://api.example:${port}/`), String(port)).toBe("port");
  });

  it("names the address rule before the port rule", () => {
    expect(ruleOf("http://10.0.0.1:8080/")).toBe("address");
  });
});

describe("the allowlist", () => {
  it("a host entry permits that host on 80 and 443 only", () => {
    const policy = withAllowlist("10.0.0.5, gateway.internal");
    expect(verdict("http://10.0.0.5/", policy)).toBe("allowed");
    expect(verdict("https://gateway.internal/v1", policy)).toBe("allowed");
    expect(ruleOf("http://10.0.0.5:8080/", policy)).toBe("port");
    expect(ruleOf("http://10.0.0.6/", policy)).toBe("address");
    expect(ruleOf("https://other.internal/", policy)).toBe("name");
  });

  it("matches the normalised host: any spelling of a listed address, any case of a listed name", () => {
    const policy = withAllowlist("10.0.0.5,Gateway.Internal");
    expect(verdict("http://0xa000005/", policy)).toBe("allowed");
    expect(verdict("http://10.5/", policy)).toBe("allowed");
    expect(verdict("https://GATEWAY.internal./", policy)).toBe("allowed");
  });

  it("a host:port entry permits that port (and only that port) of that host", () => {
    const policy = withAllowlist("api.example:8080,[fd00::1]:8443,10.0.0.7:9000");
    expect(verdict("https://api.example:8080/", policy)).toBe("allowed");
    expect(ruleOf("https://api.example:8081/", policy)).toBe("port");
    expect(verdict("https://[fd00::1]:8443/", policy)).toBe("allowed");
    // Listed, but only for 8443: the refusal says so.
    expect(verdict("https://[fd00::1]/", policy)).toBe("destination refused: port 443 of fd00::1 is not allowed (DESTINATION_ALLOWLIST lists fd00::1 only as [fd00::1]:8443)");
    expect(verdict("http://10.0.0.7:9000/", policy)).toBe("allowed");
    expect(ruleOf("http://10.0.0.7/", policy)).toBe("port");
    expect(ruleOf("http://10.0.0.8:9000/", policy)).toBe("address");
  });

  it("a CIDR entry permits IP literals in the range on 80 and 443", () => {
    const policy = withAllowlist("10.1.0.0/16, fd00::/8, 192.168.1.10/32");
    expect(verdict("http://10.1.2.3/", policy)).toBe("allowed");
    expect(verdict("http://10.1.255.255/", policy)).toBe("allowed");
    expect(ruleOf("http://10.2.0.1/", policy)).toBe("address");
    expect(ruleOf("http://10.1.2.3:8080/", policy)).toBe("port");
    expect(verdict("http://[fd12::1]/", policy)).toBe("allowed");
    expect(ruleOf("http://[fc00::1]/", policy)).toBe("address");
    expect(verdict("http://192.168.1.10/", policy)).toBe("allowed");
    expect(ruleOf("http://192.168.1.11/", policy)).toBe("address");
  });

  it("a *.suffix entry permits every name below it", () => {
    const policy = withAllowlist("*.corp.internal, *.svc.local:8443");
    expect(verdict("https://a.corp.internal/", policy)).toBe("allowed");
    expect(verdict("https://b.a.corp.internal/", policy)).toBe("allowed");
    expect(ruleOf("https://corp.internal/", policy)).toBe("name");
    expect(verdict("https://x.svc.local:8443/", policy)).toBe("allowed");
    expect(ruleOf("https://x.svc.local/", policy)).toBe("port");
    expect(ruleOf("https://x.other.local:8443/", policy)).toBe("name");
  });

  it("entries are parsed strictly; invalid ones permit nothing and are reported", () => {
    const parsed = parseAllowlist(" 10.0.0.0/33, http://x.example/, host:99999, user@host.example, *., a.example/path, ,fd00::/129, 10.0.0.1, fd00::2, fd00:0:0:0:0:0:0:3 ");
    expect(parsed.invalid).toEqual(["10.0.0.0/33", "http://x.example/", "host:99999", "user@host.example", "*.", "a.example/path", "fd00::/129"]);
    expect(parsed.entries.map((e) => [e.kind, e.host, e.port])).toEqual([
      ["host", "10.0.0.1", undefined],
      ["host", "fd00::2", undefined],
      ["host", "fd00::3", undefined],
    ]);
    expect(parseAllowlist("").entries).toEqual([]);
    expect(parseAllowlist(undefined).invalid).toEqual([]);
    // :80 and :443 are the standard ports, so they mean the same as no port.
    expect(parseAllowlist("a.example:443").entries[0]!.port).toBeUndefined();
  });

  it("does not lift the scheme rule", () => {
    expect(ruleOf("ftp://10.0.0.5/", withAllowlist("10.0.0.5"))).toBe("scheme");
  });

  it("permits the Worker's own hostname when an operator lists it", () => {
    const policy = { ...withAllowlist("runplane.example.com"), ownHostnames: ["runplane.example.com"] };
    expect(verdict("https://runplane.example.com/", policy)).toBe("allowed");
  });
});

describe("development", () => {
  it("allows loopback on any port", () => {
    for (const url of ["http://localhost:8787/", "http://127.0.0.1:9999/mock", "http://127.1/", "http://[::1]:3000/", "http://app.localhost/", "http://[::ffff:127.0.0.1]:81/"]) {
      expect(verdict(url, DEVELOPMENT), url).toBe("allowed");
      expect(verdict(url, PRODUCTION), url).toMatch(/^destination refused: /);
    }
  });

  it("still refuses everything that is not loopback", () => {
    expect(ruleOf("http://169.254.169.254/", DEVELOPMENT)).toBe("address");
    expect(ruleOf("http://10.0.0.1/", DEVELOPMENT)).toBe("address");
    expect(ruleOf("http://[fe80::1]/", DEVELOPMENT)).toBe("address");
    expect(ruleOf("http://metadata.google.internal/", DEVELOPMENT)).toBe("name");
    expect(ruleOf("http://api.example:8080/", DEVELOPMENT)).toBe("port");
    expect(ruleOf("ftp://localhost/", DEVELOPMENT)).toBe("scheme");
    expect(ruleOf("http://u:p@localhost/", DEVELOPMENT)).toBe("userinfo");
  });

  it("lets localhost through even when it is the Worker's own hostname (wrangler dev)", () => {
    expect(verdict("http://localhost:9999/", { ...DEVELOPMENT, ownHostnames: ["localhost"] })).toBe("allowed");
  });
});
