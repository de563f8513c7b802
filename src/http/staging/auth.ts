/**
 * lakeFS API authentication (notes/lakefs-dspingest.md 1.5), tried in the spec's order:
 * - `jwt_token`: `Authorization: Bearer <jwt>`, HMAC-signed (HS256, and HS384/HS512 as lakeFS
 *   accepts) with `jwtSecret`; `exp` required; `aud`, when present, must be "login"; `sub` names
 *   the user.
 * - `basic_auth`: `Authorization: Basic base64(access_key_id:secret_access_key)` against the
 *   configured credentials; key id and secret compared in constant time, over every credential,
 *   so the time taken says nothing about which key ids exist.
 * Any failure, and no credentials at all, is 401 `{"message":"error authenticating request"}`;
 * no WWW-Authenticate header (lakeFS sends none). Cookie, OIDC and SAML schemes are not offered.
 */
import { createHash, timingSafeEqual } from 'node:crypto'
import type { IncomingMessage } from 'node:http'
import { jwtVerify } from 'jose'
import type { LakeFsConfig } from '../../config/config.js'
import { UploadError } from '../../core/errors.js'

export const AUTH_FAILED = 'error authenticating request'

export interface Principal {
  readonly user: string
  readonly scheme: 'jwt_token' | 'basic_auth'
}

const digest = (s: string) => createHash('sha256').update(s, 'utf8').digest()

export function createAuthenticator(config: Pick<LakeFsConfig, 'jwtSecret' | 'credentials'>): (req: IncomingMessage) => Promise<Principal> {
  const jwtKey = new TextEncoder().encode(config.jwtSecret)
  const creds = config.credentials.map((c) => ({ id: c.accessKeyId, idHash: digest(c.accessKeyId), secretHash: digest(c.secretAccessKey) }))
  const fail = () => new UploadError('ERR_UNAUTHORIZED', AUTH_FAILED)

  function basic(encoded: string): Principal {
    const decoded = Buffer.from(encoded, 'base64').toString('utf8')
    const colon = decoded.indexOf(':')
    if (colon <= 0) throw fail()
    const idHash = digest(decoded.slice(0, colon))
    const secretHash = digest(decoded.slice(colon + 1))
    let found: string | null = null
    for (const c of creds) {
      // Both comparisons always run: no early exit on the key id.
      const idOk = timingSafeEqual(idHash, c.idHash)
      const secretOk = timingSafeEqual(secretHash, c.secretHash)
      if (idOk && secretOk && found === null) found = c.id
    }
    if (found === null) throw fail()
    return { user: found, scheme: 'basic_auth' }
  }

  async function bearer(token: string): Promise<Principal> {
    try {
      const { payload } = await jwtVerify(token, jwtKey, { algorithms: ['HS256', 'HS384', 'HS512'], requiredClaims: ['exp'] })
      const aud = payload.aud
      const audOk = aud === undefined || aud === '' || aud === 'login' || (Array.isArray(aud) && aud.length === 1 && aud[0] === 'login')
      if (!audOk || typeof payload.sub !== 'string' || payload.sub === '') throw fail()
      return { user: payload.sub, scheme: 'jwt_token' }
    } catch {
      throw fail()
    }
  }

  return async (req) => {
    const h = req.headers.authorization
    if (h === undefined) throw fail()
    const m = /^(\S+)\s+(\S+)\s*$/.exec(h)
    if (!m) throw fail()
    const scheme = m[1]!.toLowerCase()
    if (scheme === 'bearer') return bearer(m[2]!)
    if (scheme === 'basic') return basic(m[2]!)
    throw fail()
  }
}
