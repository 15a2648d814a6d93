// The project root, where wrangler runs and where .dev.vars, .wrangler/ and bench-results/ live.
// One definition, so that a script moving within scripts/ cannot point its wrangler elsewhere.
import path from "node:path";
import { fileURLToPath } from "node:url";

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
