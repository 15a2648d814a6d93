import { countUsage } from "../lib/usage";

/** Acks a message; the queue's delete is a billable operation. */
export function acknowledge(message: Message<unknown>): void {
  message.ack();
  countUsage("queue_operations");
}
