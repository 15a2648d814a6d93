import { workerdTestConfig } from "./vitest.workerd";

// The standard pool with two controller shards (POOL_SHARDS), end to end in its own workerd: the
// main suite's pool tests assume one shard.
export default workerdTestConfig({ include: ["test/sharded/**/*.test.ts"], bindings: { POOL_SHARDS: JSON.stringify({ standard: 2 }) } });
