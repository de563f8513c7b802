/**
 * Bearer JWT auth as dsp-ingest does it (dasch-swiss/dsp-ingest v0.21.1 AuthService.scala): HS256
 * only with the shared secret; `exp` required (unlike dsp-ingest; `requireExp: false` opts out) and
 * `exp`/`nbf` enforced; then `aud` must contain the audience, `iss` must equal the issuer, `sub`
 * must be there and `scope` (if present) must be a space-separated string. Those claim checks are
 * all collected and reported together, joined by ", ".
 */
import { compactVerify } from 'jose'
import { UploadError } from '../../core/errors.js'
import { isShortcode } from '../../core/ingest/names.js'
import { ingestRefusals } from './errors.js'

export interface JwtSettings {
  readonly secret: string
  readonly issuer: string
  readonly audience: string
  /**
   * Refuse tokens without `exp` (default true). dsp-ingest accepts them, and such a token, once
   * leaked, works forever; `ingest.jwt.requireExp: false` restores dsp-ingest's behaviour.
   */
  readonly requireExp?: boolean
}

/**
 * What a verified token grants. Shortcodes are upper-cased, as dsp-ingest's ProjectShortcode.from
 * does.
 */
export interface Principal {
  readonly subject: string
  readonly admin: boolean
  readonly write: ReadonlySet<string>
  readonly read: ReadonlySet<string>
}

const MAX_TOKEN_CHARS = 8192

function unauthorized(reason: string, challenge = false): UploadError {
  if (challenge) return ingestRefusals.error('ERR_UNAUTHORIZED', reason, { kind: 'challenge' })
  return new UploadError('ERR_UNAUTHORIZED', reason)
}

/** Java's Instant.toString: ISO-8601 in UTC without a zero fraction. */
function instant(sec: number): string {
  return new Date(sec * 1000).toISOString().replace('.000Z', 'Z')
}

export function createJwtVerifier(
  settings: JwtSettings,
): (authorization: string | undefined) => Promise<Principal> {
  const key = new TextEncoder().encode(settings.secret)
  return async (authorization) => {
    if (authorization === undefined || authorization.trim() === '') {
      throw unauthorized('Missing Authorization header with a Bearer token.', true)
    }
    const m = /^Bearer +(\S+)\s*$/i.exec(authorization)
    if (!m) throw unauthorized('Invalid Authorization header: expected "Bearer <token>".', true)
    const token = m[1]!
    if (token.length > MAX_TOKEN_CHARS) throw unauthorized('The token is too long.', true)
    const parts = token.split('.').length
    if (parts !== 2 && parts !== 3) {
      throw unauthorized('Expected the token to be composed of 2 or 3 parts separated by dots.')
    }
    let payloadBytes: Uint8Array
    try {
      // Only HS256: an unsigned (2-part) token, `alg: none` or another algorithm fails here.
      payloadBytes = (await compactVerify(token, key, { algorithms: ['HS256'] })).payload
    } catch {
      throw unauthorized('Invalid signature for this token or wrong algorithm.')
    }
    let claims: Record<string, unknown>
    try {
      const parsed: unknown = JSON.parse(
        new TextDecoder('utf-8', { fatal: true }).decode(payloadBytes),
      )
      if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed))
        throw new Error('not an object')
      claims = parsed as Record<string, unknown>
    } catch {
      throw unauthorized('Invalid contents: the token payload is not a JSON object.')
    }
    const now = Date.now() / 1000
    const exp = claims['exp']
    if (exp === undefined && settings.requireExp !== false)
      throw unauthorized('Invalid contents: the token has no expiry (exp).')
    if (exp !== undefined) {
      if (typeof exp !== 'number' || !Number.isFinite(exp))
        throw unauthorized('Invalid contents: exp must be a number.')
      if (exp <= now) throw unauthorized(`The token is expired since ${instant(exp)}`)
    }
    const nbf = claims['nbf']
    if (nbf !== undefined) {
      if (typeof nbf !== 'number' || !Number.isFinite(nbf))
        throw unauthorized('Invalid contents: nbf must be a number.')
      if (nbf > now) throw unauthorized(`The token will only be valid after ${instant(nbf)}`)
    }
    const problems: string[] = []
    const aud = claims['aud']
    const audiences =
      typeof aud === 'string'
        ? [aud]
        : Array.isArray(aud)
          ? aud.filter((a) => typeof a === 'string')
          : []
    if (!audiences.includes(settings.audience))
      problems.push(`Invalid audience: expected ${settings.audience}`)
    if (claims['iss'] !== settings.issuer)
      problems.push(`Invalid issuer: expected ${settings.issuer}`)
    const sub = claims['sub']
    if (typeof sub !== 'string' || sub === '') problems.push('Subject is missing.')
    const write = new Set<string>()
    const read = new Set<string>()
    let admin = false
    const scope = claims['scope']
    if (scope !== undefined) {
      if (typeof scope !== 'string')
        problems.push('Invalid contents: scope must be a space-separated string.')
      else {
        for (const word of scope.split(' ').filter((w) => w !== '')) {
          if (word === 'admin') admin = true
          const sm = /^(write|read):project:(.*)$/.exec(word)
          if (sm) {
            // A known scope with a bad shortcode fails the whole token; unknown words are ignored.
            if (!isShortcode(sm[2]!))
              problems.push(
                `Invalid contents: Predicate failed: "${sm[2]}" is not a project shortcode.`,
              )
            else (sm[1] === 'write' ? write : read).add(sm[2]!.toUpperCase())
          }
        }
      }
    }
    if (problems.length > 0) throw unauthorized(problems.join(', '))
    return { subject: sub as string, admin, write, read }
  }
}

/**
 * `projectWritable(sc)`: admin, or `write:project:<sc>`. The shortcode is compared without regard
 * to case. (dsp-ingest upper-cases the scope but not the URL's shortcode, so a lower-case URL
 * locks out a project-scoped token; a side effect we do not copy.) Failure: 401 "No project
 * access."
 */
export function requireProjectWrite(p: Principal, shortcode: string): void {
  if (p.admin || p.write.has(shortcode.toUpperCase())) return
  throw new UploadError('ERR_FORBIDDEN', 'No project access.')
}
