import { workerdTestConfig } from "./vitest.workerd";

// Tests run in workerd with the real bindings from wrangler.toml (vitest.workerd.ts). The
// suites that need other deployment settings run in their own workerd: vitest.sharded.config.ts.
export default workerdTestConfig({ exclude: ["test/sharded/**"] });
