/**
 * What customers see of a run type's step configs: credentials written inline (a literal
 * `authorization` header, an `apiKey` field) are replaced by REDACTED. References stay
 * visible, `{{secrets.NAME}}` included: they name a secret, never hold it.
 */
import { EMBEDDED } from "./input-references";

export const REDACTED = "[redacted]";

/** Header names that carry credentials (case-insensitive), in any `headers` object. */
const CREDENTIAL_HEADER = /^(?:authorization|proxy-authorization|cookie|set-cookie|x-api-key|api-key)$|-(?:token|secret|key)$/i;
/** Config fields named like a credential, at any depth: apiKey, api_key, accessToken, client_secret, password, authorization… */
const CREDENTIAL_FIELD = /(?:api[-_]?key|(?:private|secret|access|signing)[-_]?key|token|secret|password|passwd)$|^(?:proxy-)?authorization$|^cookie$/i;
/** A value that is only references, perhaps after an auth scheme ("Bearer {{secrets.TOKEN}}"), holds no credential itself. */
const ONLY_REFERENCES = /^\s*(?:(?:bearer|basic|token|bot|digest|apikey)\s+)?$/i;

function redactValue(value: unknown): unknown {
  if (typeof value === "string" && ONLY_REFERENCES.test(value.replace(EMBEDDED, ""))) return value;
  return REDACTED;
}

/** A step config with its inline credentials replaced by REDACTED. */
export function redactConfig(config: unknown): unknown {
  const visit = (value: unknown, inHeaders: boolean): unknown => {
    if (Array.isArray(value)) return value.map((item) => visit(item, false));
    if (value === null || typeof value !== "object") return value;
    return Object.fromEntries(
      Object.entries(value).map(([key, item]) => {
        if ((inHeaders && CREDENTIAL_HEADER.test(key)) || CREDENTIAL_FIELD.test(key)) return [key, redactValue(item)];
        return [key, visit(item, key.toLowerCase() === "headers")];
      }),
    );
  };
  return visit(config, false);
}
