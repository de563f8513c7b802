/**
 * Bearer-token authentication for the families whose real APIs have none of their own (ImageStore
 * sits behind Service Fabric's cluster security, Flamenco's Shaman behind the Manager's network):
 * `Authorization: Bearer <token>` where the token is one of the configured static tokens or an
 * HS256 JWT signed with the configured secret (FERRY_CONFIG `<family>.auth`, see BearerAuthConfig).
 *
 * - Static tokens are compared in constant time: the SHA-256 digest of the presented token against
 *   the digest of every configured token (equal-length buffers for timingSafeEqual), without an
 *   early exit, so the time taken says nothing about how much of a token was right.
 * - JWTs: HS256 only (jose); `exp` required unless `requireExp` is false; `exp`/`nbf` enforced;
 *   `iss` and `aud` checked when configured.
 * - A failure never echoes the token. The caller answers 401 with `WWW-Authenticate: Bearer`
 *   (RFC 6750 §3) in its API's error body.
 */
import { createHash, timingSafeEqual } from 'node:crypto'
import { errors as joseErrors, jwtVerify } from 'jose'
import type { BearerAuthConfig } from '../../config/config.js'
import type { UploadError } from '../../core/errors.js'
import { defineRefusals } from '../errors.js'

export interface BearerPrincipal {
  /** `token` for a static token, else the JWT's `sub` (or `jwt` when it has none). */
  readonly subject: string
}

/** Checks an Authorization header; throws ERR_UNAUTHORIZED carrying its challenge on failure. */
export type BearerCheck = (authorization: string | undefined) => Promise<BearerPrincipal>

const MAX_TOKEN_CHARS = 8192
const digest = (s: string) => createHash('sha256').update(s, 'utf8').digest()

/** A bearer refusal's fields: the `WWW-Authenticate` value to answer with. */
export interface BearerFields {
  readonly challenge: string
}

/** The refusals of the bearer check (ImageStore and Shaman share it). */
export const bearerRefusals = defineRefusals<BearerFields>()

/** The WWW-Authenticate value for a refusal (RFC 6750 §3: no error code when no token came). */
export function challengeOf(err: UploadError): string {
  return bearerRefusals.fieldsOf(err)?.challenge ?? 'Bearer realm="ferry"'
}

function refuse(message: string, tokenSent: boolean): UploadError {
  const challenge = tokenSent
    ? 'Bearer realm="ferry", error="invalid_token"'
    : 'Bearer realm="ferry"'
  return bearerRefusals.error('ERR_UNAUTHORIZED', message, { challenge })
}

export function createBearerCheck(config: BearerAuthConfig): BearerCheck {
  const tokens = config.tokens.map(digest)
  const jwtKey = config.jwt ? new TextEncoder().encode(config.jwt.secret) : null

  function staticMatch(token: string): boolean {
    const d = digest(token)
    let ok = false
    for (const t of tokens) ok = timingSafeEqual(d, t) || ok
    return ok
  }

  async function verifyJwt(token: string): Promise<BearerPrincipal | null> {
    if (jwtKey === null || config.jwt === null || token.split('.').length !== 3) return null
    try {
      const { payload } = await jwtVerify(token, jwtKey, {
        algorithms: ['HS256'],
        ...(config.jwt.issuer !== null ? { issuer: config.jwt.issuer } : {}),
        ...(config.jwt.audience !== null ? { audience: config.jwt.audience } : {}),
        requiredClaims: config.jwt.requireExp ? ['exp'] : [],
      })
      return {
        subject: typeof payload.sub === 'string' && payload.sub !== '' ? payload.sub : 'jwt',
      }
    } catch (err) {
      if (err instanceof joseErrors.JWTExpired) throw refuse('the token has expired', true)
      return null
    }
  }

  return async (authorization) => {
    if (authorization === undefined || authorization.trim() === '')
      throw refuse('authentication required: send Authorization: Bearer <token>', false)
    const m = /^Bearer +(\S+)\s*$/i.exec(authorization)
    if (!m) throw refuse('authentication required: send Authorization: Bearer <token>', false)
    const token = m[1]!
    if (token.length > MAX_TOKEN_CHARS) throw refuse('the token is not valid', true)
    // Both kinds are tried whatever the first says, so the answer time does not tell them apart.
    const isStatic = staticMatch(token)
    const viaJwt = await verifyJwt(token)
    if (isStatic) return { subject: 'token' }
    if (viaJwt !== null) return viaJwt
    throw refuse('the token is not valid', true)
  }
}
