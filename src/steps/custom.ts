/**
 * Your own step types. Define a StepType (see ./step-type.ts and ./synthetic.ts for a model)
 * and register it here; the Worker imports this file at start-up, so the control plane
 * validates its config and the consumer pool runs it. Example:
 *
 *   registerStepType({
 *     type: "resize-image",
 *     description: "Resizes an image held in R2",
 *     configSchema: z.object({ key: z.string(), width: z.number().int().positive() }).strict(),
 *     async execute(config, ctx) {
 *       // ... do the work; honour ctx.signal (the step's timeout)
 *       return { ok: true, output: { key: config.key } };
 *     },
 *   });
 */
export {};
