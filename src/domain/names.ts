import { z } from "zod";

/** Names and ids chosen by clients: customer id, project id, run type, pool, step name. */
export const CLIENT_NAME_PATTERN = /^[a-z0-9][a-z0-9_-]{0,63}$/;

export const clientName = (what: string) =>
  z
    .string()
    .regex(CLIENT_NAME_PATTERN, `${what} must match ^[a-z0-9][a-z0-9_-]{0,63}$`);
