/**
 * A consumer invocation's `done` reports to its pool's controller shards, at most one request in
 * flight per shard: the chains that end while a shard's report is on its way go back together in
 * the next one. A lone chain's slot goes back at once (no timer, no wait for the batch), and under
 * load, when a batch's chains end close together, one request gives back many slots instead of
 * one request each (issue 11's cost budget: the controller's two requests per chain were most of
 * what pool scheduling cost the step path).
 */
import { MAX_DONE, poolControllerStub, type DoneSlot } from "../../durable-objects/pool/rpc";

interface Waiting {
  slot: DoneSlot;
  delivered: () => void;
  failed: (err: unknown) => void;
}

interface ShardLine {
  sending: boolean;
  waiting: Waiting[];
}

export class SlotReports {
  private readonly lines = new Map<number, ShardLine>();

  constructor(
    private readonly env: Env,
    private readonly pool: string,
  ) {}

  /** Settles when the controller has the report (or with the request's error: the slot's lease then gives it back). */
  done(shard: number, slot: DoneSlot): Promise<void> {
    let line = this.lines.get(shard);
    if (!line) this.lines.set(shard, (line = { sending: false, waiting: [] }));
    const reported = new Promise<void>((delivered, failed) => line.waiting.push({ slot, delivered, failed }));
    if (!line.sending) void this.send(shard, line);
    return reported;
  }

  private async send(shard: number, line: ShardLine): Promise<void> {
    line.sending = true;
    const stub = poolControllerStub(this.env, this.pool, shard);
    while (line.waiting.length > 0) {
      const batch = line.waiting.splice(0, MAX_DONE);
      try {
        await stub.done({ pool: this.pool, shard, slots: batch.map((w) => w.slot) });
        for (const w of batch) w.delivered();
      } catch (err) {
        for (const w of batch) w.failed(err);
      }
    }
    line.sending = false;
  }
}
