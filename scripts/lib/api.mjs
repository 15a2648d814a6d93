// One HTTP request to the Runplane API, as every script sends it: a Bearer key, a JSON body
// when there is one. What to make of the answer (throw, retry, tolerate non-JSON) differs
// from script to script, so this returns the raw status and text and each script decides.

/**
 * `key` is sent as `Authorization: Bearer <key>`; `body`, when given, as JSON (with its
 * Content-Type: the API refuses a POST/PUT body of any other type). `timeoutMs` aborts a
 * request that does not answer in time; without it the request waits as long as fetch does.
 */
export async function request(base, method, route, { body, key, timeoutMs } = {}) {
  const res = await fetch(`${base}${route}`, {
    method,
    headers: { authorization: `Bearer ${key}`, ...(body === undefined ? {} : { "content-type": "application/json" }) },
    body: body === undefined ? undefined : JSON.stringify(body),
    ...(timeoutMs ? { signal: AbortSignal.timeout(timeoutMs) } : {}),
  });
  return { status: res.status, ok: res.ok, text: await res.text() };
}
