/**
 * Worker pools: each has its own job queue and dead-letter queue (see wrangler.toml).
 * Adding a pool = a producer binding for each queue, a consumer for each, and a line here.
 */
export interface PoolConfig {
  name: string;
  jobQueue: string;
  deadLetterQueue: string;
  /**
   * The consumer's max_concurrency in wrangler.toml (repeat it here): the capacity worker
   * utilization is measured against until issue 11's pool controller decides concurrency.
   */
  maxConcurrency: number;
  jobs: (env: Env) => Queue<unknown>;
  deadLetters: (env: Env) => Queue<unknown>;
}

export const POOLS: Record<string, PoolConfig> = {
  standard: {
    name: "standard",
    jobQueue: "runplane-jobs-standard",
    deadLetterQueue: "runplane-dlq-standard",
    maxConcurrency: 10,
    jobs: (env) => env.JOBS_STANDARD,
    deadLetters: (env) => env.DLQ_STANDARD,
  },
};

export const DEFAULT_POOL = "standard";
export const EVENTS_QUEUE = "runplane-events";
export const EVENTS_DEAD_LETTER_QUEUE = "runplane-events-dlq";

export const poolNames = () => Object.keys(POOLS);
export const getPool = (name: string): PoolConfig | undefined => (Object.hasOwn(POOLS, name) ? POOLS[name] : undefined);
export const poolForJobQueue = (queue: string) => Object.values(POOLS).find((p) => p.jobQueue === queue);
export const poolForDeadLetterQueue = (queue: string) => Object.values(POOLS).find((p) => p.deadLetterQueue === queue);
