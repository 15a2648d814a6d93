import { env } from "cloudflare:workers";
import { describe, expect, it, vi } from "vitest";

describe("dead-letter queue", () => {
  it("a malformed job message goes to the pool's dead-letter queue and is recorded once, with its reason", async () => {
    const garbage = { hello: "not a job", n: Math.random() };
    await env.JOBS_STANDARD.send(garbage);
    const entry = await vi.waitUntil(
      () => env.DB.prepare("SELECT * FROM dlq_entries WHERE message LIKE ?").bind(`%${garbage.n}%`).first<Record<string, unknown>>(),
      { timeout: 5000, interval: 50 },
    );
    expect(entry).toMatchObject({ pool: "standard", failure_type: "permanent", failure_message: "malformed job message", state: "open" });
    const recorded = JSON.parse(String(entry!.message));
    expect(recorded.body).toEqual(garbage);
    expect(recorded.issues.length).toBeGreaterThan(0);

    // A redelivery of the same dead letter records nothing new.
    await env.DLQ_STANDARD.send(recorded);
    await new Promise((r) => setTimeout(r, 300));
    const count = await env.DB.prepare("SELECT COUNT(*) AS n FROM dlq_entries WHERE message LIKE ?").bind(`%${garbage.n}%`).first<{ n: number }>();
    expect(count?.n).toBe(1);
  });
});
