/**
 * Pushes a pool's desired concurrency to its queue consumer on Cloudflare (`max_concurrency`),
 * through Cloudflare's API, when CLOUDFLARE_API_TOKEN and CLOUDFLARE_ACCOUNT_ID are set:
 *   GET /accounts/{account}/queues                              → the queue's id, by name
 *   GET /accounts/{account}/queues/{queue}/consumers            → the Worker consumer's id and settings
 *   PUT /accounts/{account}/queues/{queue}/consumers/{consumer} → the same consumer, max_concurrency changed
 * The PUT replaces the consumer, so it sends back every setting it read. Ids are cached per isolate.
 */
import { z } from "zod";

export const CLOUDFLARE_API_BASE = "https://api.cloudflare.com/client/v4";
/** Cloudflare's bounds for a consumer's max_concurrency. */
export const MAX_CONSUMER_CONCURRENCY = 250;

export interface CloudflareApiConfig {
  token: string;
  accountId: string;
  baseUrl: string;
}

/** The API credentials from the Worker's env; null when either is unset (admission alone enforces then). */
export function cloudflareApiConfig(env: { CLOUDFLARE_API_TOKEN?: string; CLOUDFLARE_ACCOUNT_ID?: string }): CloudflareApiConfig | null {
  const token = String(env.CLOUDFLARE_API_TOKEN ?? "").trim();
  const accountId = String(env.CLOUDFLARE_ACCOUNT_ID ?? "").trim();
  if (!token || !accountId) return null;
  return { token, accountId, baseUrl: CLOUDFLARE_API_BASE };
}

/** max_concurrency for a desired number of concurrent chains: each invocation carries up to a batch of them. */
export function consumerConcurrencyFor(desired: number, messagesPerInvocation: number): number {
  return Math.min(MAX_CONSUMER_CONCURRENCY, Math.max(1, Math.ceil(desired / Math.max(1, messagesPerInvocation))));
}

const Envelope = z.object({
  success: z.boolean(),
  errors: z.array(z.object({ code: z.number().optional(), message: z.string() })).default([]),
  result: z.unknown().optional(),
});
const QueueList = z.array(z.object({ queue_id: z.string(), queue_name: z.string() }).passthrough());
const ConsumerList = z.array(
  z
    .object({
      consumer_id: z.string(),
      type: z.string().optional(),
      script_name: z.string().optional(),
      service: z.string().optional(),
      dead_letter_queue: z.string().nullable().optional(),
      settings: z.record(z.string(), z.unknown()).default({}),
    })
    .passthrough(),
);

interface ConsumerRef {
  queueId: string;
  consumerId: string;
  scriptName: string;
  deadLetterQueue: string | null;
  settings: Record<string, unknown>;
}

export class CloudflareApiError extends Error {}

const refs = new Map<string, ConsumerRef>();

async function call(config: CloudflareApiConfig, method: string, path: string, body?: unknown): Promise<unknown> {
  const response = await fetch(`${config.baseUrl}${path}`, {
    method,
    headers: { authorization: `Bearer ${config.token}`, ...(body !== undefined ? { "content-type": "application/json" } : {}) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  let parsed: z.infer<typeof Envelope> | null = null;
  try {
    const result = Envelope.safeParse(JSON.parse(text));
    parsed = result.success ? result.data : null;
  } catch {
    parsed = null;
  }
  if (!response.ok || !parsed?.success) {
    const why = parsed?.errors.map((e) => e.message).join("; ") || text.slice(0, 200);
    throw new CloudflareApiError(`Cloudflare API ${method} ${path.replace(config.accountId, "{account}")} answered ${response.status}: ${why}`);
  }
  return parsed.result;
}

async function consumerRef(config: CloudflareApiConfig, queueName: string, scriptName: string): Promise<ConsumerRef> {
  const cacheKey = `${config.accountId}/${queueName}/${scriptName}`;
  const cached = refs.get(cacheKey);
  if (cached) return cached;
  let queueId: string | null = null;
  for (let page = 1; page <= 20 && queueId === null; page++) {
    const queues = QueueList.parse(await call(config, "GET", `/accounts/${config.accountId}/queues?page=${page}&per_page=100`));
    queueId = queues.find((q) => q.queue_name === queueName)?.queue_id ?? null;
    if (queues.length < 100) break;
  }
  if (queueId === null) throw new CloudflareApiError(`queue ${queueName} not found in the account`);
  const consumers = ConsumerList.parse(await call(config, "GET", `/accounts/${config.accountId}/queues/${queueId}/consumers`));
  const consumer = consumers.find((c) => (c.type ?? "worker") === "worker" && (c.script_name ?? c.service) === scriptName);
  if (!consumer) throw new CloudflareApiError(`queue ${queueName} has no Worker consumer ${scriptName}`);
  const ref: ConsumerRef = { queueId, consumerId: consumer.consumer_id, scriptName, deadLetterQueue: consumer.dead_letter_queue || null, settings: consumer.settings };
  refs.set(cacheKey, ref);
  return ref;
}

/** Sets the consumer's max_concurrency, keeping every other setting. */
export async function setConsumerMaxConcurrency(config: CloudflareApiConfig, queueName: string, scriptName: string, maxConcurrency: number): Promise<void> {
  const ref = await consumerRef(config, queueName, scriptName);
  const settings = { ...ref.settings, max_concurrency: maxConcurrency };
  try {
    await call(config, "PUT", `/accounts/${config.accountId}/queues/${ref.queueId}/consumers/${ref.consumerId}`, {
      type: "worker",
      script_name: ref.scriptName,
      ...(ref.deadLetterQueue ? { dead_letter_queue: ref.deadLetterQueue } : {}),
      settings,
    });
  } catch (err) {
    // The consumer may have been replaced (a redeploy): look it up again next time.
    refs.delete(`${config.accountId}/${queueName}/${scriptName}`);
    throw err;
  }
  ref.settings = settings;
}

/** Tests: forget cached ids. */
export const forgetConsumerRefs = () => refs.clear();
