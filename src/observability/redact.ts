/**
 * Keeping credentials out of logs and error messages (issue 17 item 11). Three kinds of secret
 * travel in URLs: presigned-URL signatures and tokens in query strings, and passwords in the
 * userinfo of connection URLs (`redis://:password@host`). Everything Ferry prints about a URL
 * goes through one of these helpers.
 */

/** What a redacted value is replaced with. */
export const REDACTED = '[REDACTED]'

/**
 * Query parameter names whose values are credentials: presigned-URL signatures (Ferry's own
 * `X-Ferry-Signature`, S3's `X-Amz-Signature` / `Signature`, Azure's `sig`, GCS's
 * `X-Goog-Signature`), credentials and security tokens, OAuth codes and tokens, passwords, keys.
 * Matched on the lower-cased, percent-decoded name; a name that cannot be decoded is treated as
 * sensitive.
 */
const SENSITIVE_PARAM = /sig|token|secret|passw|pwd|credential|auth|jwt|key|code/i
/** Names that contain a sensitive word but carry none (kept readable in logs). */
const HARMLESS_PARAM = new Set(['session-id', 'api-version', 'presign'])

export function isSensitiveParam(name: string): boolean {
  let decoded: string
  try {
    decoded = decodeURIComponent(name.replace(/\+/g, ' ')).toLowerCase()
  } catch {
    return true
  }
  if (HARMLESS_PARAM.has(decoded)) return false
  return SENSITIVE_PARAM.test(decoded)
}

/**
 * A request target (`/path?query`) fit for a log line: the path as sent, every query parameter's
 * name kept, and the value of every parameter that may be a credential replaced by
 * `[REDACTED]`. The query is split by hand, not parsed, so a malformed one is still redacted.
 */
export function redactUrl(target: string): string {
  const q = target.indexOf('?')
  if (q < 0) return target
  const hash = target.indexOf('#', q)
  const query = target.slice(q + 1, hash < 0 ? undefined : hash)
  const parts = query.split('&').map((pair) => {
    const eq = pair.indexOf('=')
    if (eq < 0) return pair
    const name = pair.slice(0, eq)
    return isSensitiveParam(name) ? `${name}=${REDACTED}` : pair
  })
  return `${target.slice(0, q)}?${parts.join('&')}`
}

/**
 * A URL with the password of its userinfo masked (`redis://user:***@host:6379/0`), for every
 * message that prints a connection URL. Query credentials are redacted as in `redactUrl`. Text
 * that is not a URL is returned with any `scheme://user:password@` inside it masked.
 */
export function maskUrl(url: string): string {
  return maskUrlsIn(url)
}

/** Masks the password of every `scheme://user:password@` found in `text`, and query secrets. */
export function maskUrlsIn(text: string): string {
  return (
    text
      // The authority runs to the first `/`, `?`, `#` or space; its userinfo ends at its LAST `@`
      // (a raw `@` in a password must not leave the rest of it readable).
      .replace(
        /\b([a-z][a-z0-9+.-]*:\/\/)([^\s/?#]*)@/gi,
        (_m, scheme: string, userinfo: string) => {
          const colon = userinfo.indexOf(':')
          return colon < 0 ? `${scheme}${userinfo}@` : `${scheme}${userinfo.slice(0, colon)}:***@`
        },
      )
      .replace(/\b([a-z][a-z0-9+.-]*:\/\/[^\s?#]*\?[^\s#]*)/gi, (u: string) => redactUrl(u))
  )
}

/**
 * `text` with every occurrence of each secret replaced by `[REDACTED]` (a last line of defence
 * for start-up errors, which may quote configuration values in forms we cannot foresee).
 */
export function scrubSecrets(text: string, secrets: readonly string[]): string {
  let out = text
  for (const s of secrets) {
    // Short values would mask unrelated text and reveal nothing worth hiding.
    if (s.length >= 4) out = out.split(s).join(REDACTED)
  }
  return out
}
