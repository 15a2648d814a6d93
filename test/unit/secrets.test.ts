import { describe, expect, it } from "vitest";
import { referencedSteps, resolveReferences, SecretInjectionError } from "../../src/domain/input-references";
import { redactConfig } from "../../src/domain/redaction";
import { MissingSecretError, scrubSecrets, secretNames, secretReferences, substituteSecrets, withSecretPlaceholders } from "../../src/domain/secrets";
import { openSecret, sealSecret } from "../../src/lib/secrets-crypto";

const scope = { input: { name: "Ada", evil: "{{secrets.TOKEN}}", half: "secrets.TOKEN}}", obj: { deep: ["{{ secrets.TOKEN }}"] } }, steps: { a: { output: { v: 1 } } } };

describe("secret references in the run object", () => {
  it("pass through unresolved, whole or embedded, next to resolved input and step references", () => {
    expect(resolveReferences({ auth: "Bearer {{secrets.TOKEN}}", whole: "{{secrets.TOKEN}}", hi: "hi {{input.name}} {{secrets.OTHER}}", v: "{{steps.a.output.v}}" }, scope)).toEqual({
      auth: "Bearer {{secrets.TOKEN}}",
      whole: "{{secrets.TOKEN}}",
      hi: "hi Ada {{secrets.OTHER}}",
      v: 1,
    });
  });

  it("refuse a value from input that forms a secret reference, alone or with the text around it", () => {
    expect(() => resolveReferences({ body: "{{input.evil}}" }, scope)).toThrow(SecretInjectionError);
    expect(() => resolveReferences({ body: "x {{input.evil}}" }, scope)).toThrow(SecretInjectionError);
    expect(() => resolveReferences({ body: "{{input.obj}}" }, scope)).toThrow(SecretInjectionError);
    expect(() => resolveReferences({ body: "{{{{input.half}}" }, scope)).toThrow(SecretInjectionError);
    expect(() => resolveReferences({ body: "{{input.obj}} and {{secrets.TOKEN}}" }, scope)).toThrow(SecretInjectionError);
    // The config's own reference next to harmless input is fine.
    expect(resolveReferences("{{{{input.name}} {{secrets.TOKEN}}", scope)).toBe("{{Ada {{secrets.TOKEN}}");
  });

  it("are not step references", () => {
    expect(referencedSteps({ a: "{{secrets.TOKEN}}", b: "{{steps.x.output}}" })).toEqual(["x"]);
  });
});

describe("secret references in the data plane", () => {
  it("are found with their paths, malformed ones flagged", () => {
    expect(secretReferences({ headers: { a: "Bearer {{secrets.A}}" }, list: ["{{secrets.b}}", "{{ secrets.C }}", "{{secrets.D.E}}", "{{secrets}}"] })).toEqual([
      { path: ["headers", "a"], name: "A", reference: "secrets.A" },
      { path: ["list", 0], name: null, reference: "secrets.b" },
      { path: ["list", 1], name: "C", reference: "secrets.C" },
      { path: ["list", 2], name: null, reference: "secrets.D.E" },
      { path: ["list", 3], name: null, reference: "secrets" },
    ]);
    expect(secretNames({ a: "{{secrets.A}}{{secrets.A}}", b: "{{secrets.B}}" })).toEqual(["A", "B"]);
  });

  it("are substituted in one pass; a missing one throws naming it", () => {
    const values = new Map([["A", "va {{secrets.B}}"], ["B", "vb"]]);
    expect(substituteSecrets({ x: "Bearer {{secrets.A}}", y: ["{{input.keep}}"], n: 2 }, values)).toEqual({ x: "Bearer va {{secrets.B}}", y: ["{{input.keep}}"], n: 2 });
    expect(() => substituteSecrets("{{secrets.C}}", values)).toThrow(MissingSecretError);
    expect(() => substituteSecrets("{{secrets.C}}", values)).toThrow('"C"');
  });

  it("count as the longest value for a budget's worst case", () => {
    expect((withSecretPlaceholders({ m: "say {{secrets.A}}" }) as { m: string }).m.length).toBe(4 + 8192);
  });

  it("are scrubbed from outputs and messages, also JSON-escaped, URL-encoded and base64", () => {
    const secret = 'p@ss/"word" ü';
    const output = {
      raw: `got ${secret}`,
      json: JSON.stringify({ k: secret }),
      url: `?k=${encodeURIComponent(secret)}`,
      basic: `Basic ${btoa(String.fromCharCode(...new TextEncoder().encode(secret)))}`,
      [secret]: 1,
      n: 3,
    };
    const scrubbed = scrubSecrets(output, [secret]);
    expect(JSON.stringify(scrubbed)).not.toContain("ss/");
    expect(scrubbed).toEqual({ raw: "got [secret]", json: '{"k":"[secret]"}', url: "?k=[secret]", basic: "Basic [secret]", "[secret]": 1, n: 3 });
    expect(scrubSecrets({ ok: true, output: "nothing" }, [])).toEqual({ ok: true, output: "nothing" });
  });
});

describe("redaction of run types for customers", () => {
  it("hides credential headers and fields, keeps references and everything else", () => {
    expect(
      redactConfig({
        url: "https://x.example",
        headers: {
          Authorization: "Bearer sk-1",
          "proxy-authorization": "Basic abc",
          Cookie: "s=1",
          "x-api-key": "k",
          "api-key": "k",
          "x-auth-token": "t",
          "x-client-secret": "s",
          "x-signing-key": "s",
          "content-type": "application/json",
          "x-ref": "Bearer {{secrets.A}}",
        },
        body: { password: "pw", client_secret: "cs", accessToken: "at", apiKey: 7, token: { a: 1 }, maxTokens: 10, tokenUrl: "u", list: [{ secret: "s" }] },
        messages: [{ role: "user", content: "hi" }],
        apiKey: "{{secrets.KEY}}",
        auth: { authorization: "Basic xyz", "x-client-key": "id-123" },
      }),
    ).toEqual({
      url: "https://x.example",
      headers: {
        Authorization: "[redacted]",
        "proxy-authorization": "[redacted]",
        Cookie: "[redacted]",
        "x-api-key": "[redacted]",
        "api-key": "[redacted]",
        "x-auth-token": "[redacted]",
        "x-client-secret": "[redacted]",
        "x-signing-key": "[redacted]",
        "content-type": "application/json",
        "x-ref": "Bearer {{secrets.A}}",
      },
      body: { password: "[redacted]", client_secret: "[redacted]", accessToken: "[redacted]", apiKey: "[redacted]", token: "[redacted]", maxTokens: 10, tokenUrl: "u", list: [{ secret: "[redacted]" }] },
      messages: [{ role: "user", content: "hi" }],
      apiKey: "{{secrets.KEY}}",
      // Header-name rules apply in `headers`; a field called authorization is hidden anywhere.
      auth: { authorization: "[redacted]", "x-client-key": "id-123" },
    });
    // Literal text next to a reference is still a credential.
    expect(redactConfig({ headers: { authorization: "Bearer sk-{{secrets.A}}" } })).toEqual({ headers: { authorization: "[redacted]" } });
  });
});

describe("sealed secrets", () => {
  it("round-trip under the same key, scope and name only", async () => {
    const sealed = await sealSecret("k".repeat(40), "customer:a", "N", "value ü");
    expect(await openSecret("k".repeat(40), "customer:a", "N", sealed)).toBe("value ü");
    await expect(openSecret("k".repeat(40), "customer:b", "N", sealed)).rejects.toThrow();
    await expect(openSecret("j".repeat(40), "customer:a", "N", sealed)).rejects.toThrow();
    const tampered = { ...sealed, ciphertext: btoa(String.fromCharCode(...[...atob(sealed.ciphertext)].map((c, i) => c.charCodeAt(0) ^ (i === 0 ? 1 : 0)))) };
    await expect(openSecret("k".repeat(40), "customer:a", "N", tampered)).rejects.toThrow();
  });
});
