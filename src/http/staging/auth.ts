/**
 * lakeFS API authentication (treeverse/lakeFS pkg/api/auth_middleware.go, v1.84), tried in the
 * spec's order:
 * - `jwt_token`: `Authorization: Bearer <jwt>`, HMAC-signed (HS256, and HS384/HS512 as lakeFS
 *   accepts) with `jwtSecret`; `exp` required; `aud`, when present, must be "login"; `sub` names
 *   the user.
 * - `basic_auth`: `Authorization: Basic base64(access_key_id:secret_access_key)` against the
 *   configured credentials; key id and secret compared in constant time, over every credential,
 *   so the time taken says nothing about which key ids exist.
 * Any failure, and no credentials at all, is 401 `{"message":"error authenticating request"}`;
 * no WWW-Authenticate header (lakeFS sends none). Cookie, OIDC and SAML schemes are not offered.
 *
 * Authorization: a credential with `repositories`, or a JWT subject listed in `jwtSubjects`,
 * reaches only those repositories; once `jwtSubjects` is set, a subject it does not list reaches
 * none. A denial is lakeFS's policy denial: 401 `{"message":"insufficient permissions"}` (lakeFS
 * never answers 403 for it, notes 1.4/1.5), checked before the repository is looked up, so a
 * restricted user cannot tell which other repositories exist.
 */
import { createHash, timingSafeEqual } from 'node:crypto'
import type { IncomingMessage } from 'node:http'
import { jwtVerify } from 'jose'
import type { LakeFsConfig } from '../../config/config.js'
import { UploadError } from '../../core/errors.js'

export const AUTH_FAILED = 'error authenticating request'
export const INSUFFICIENT_PERMISSIONS = 'insufficient permissions'

export interface Principal {
  readonly user: string
  readonly scheme: 'jwt_token' | 'basic_auth'
  /** Repositories this principal may use; null = all. */
  readonly repositories: ReadonlySet<string> | null
}

/** Throws lakeFS's 401 "insufficient permissions" unless `p` may use `repository`. */
export function authorizeRepository(p: Principal, repository: string): void {
  if (p.repositories !== null && !p.repositories.has(repository)) {
    throw new UploadError('ERR_UNAUTHORIZED', INSUFFICIENT_PERMISSIONS)
  }
}

const digest = (s: string) => createHash('sha256').update(s, 'utf8').digest()

export function createAuthenticator(
  config: Pick<LakeFsConfig, 'jwtSecret' | 'credentials'> &
    Partial<Pick<LakeFsConfig, 'jwtSubjects'>>,
): (req: IncomingMessage) => Promise<Principal> {
  const jwtKey = new TextEncoder().encode(config.jwtSecret)
  const creds = config.credentials.map((c) => ({
    id: c.accessKeyId,
    idHash: digest(c.accessKeyId),
    secretHash: digest(c.secretAccessKey),
    repositories: c.repositories ? new Set(c.repositories) : null,
  }))
  const subjects = config.jwtSubjects ?? null
  const repositoriesOf = (sub: string): ReadonlySet<string> | null => {
    if (subjects === null) return null
    // Own properties only: a subject named "constructor" or "__proto__" must not match
    // Object.prototype.
    return new Set(Object.hasOwn(subjects, sub) ? subjects[sub] : [])
  }
  const fail = () => new UploadError('ERR_UNAUTHORIZED', AUTH_FAILED)

  function basic(encoded: string): Principal {
    const decoded = Buffer.from(encoded, 'base64').toString('utf8')
    const colon = decoded.indexOf(':')
    if (colon <= 0) throw fail()
    const idHash = digest(decoded.slice(0, colon))
    const secretHash = digest(decoded.slice(colon + 1))
    let found: (typeof creds)[number] | null = null
    for (const c of creds) {
      // Both comparisons always run: no early exit on the key id.
      const idOk = timingSafeEqual(idHash, c.idHash)
      const secretOk = timingSafeEqual(secretHash, c.secretHash)
      if (idOk && secretOk && found === null) found = c
    }
    if (found === null) throw fail()
    return { user: found.id, scheme: 'basic_auth', repositories: found.repositories }
  }

  async function bearer(token: string): Promise<Principal> {
    try {
      const { payload } = await jwtVerify(token, jwtKey, {
        algorithms: ['HS256', 'HS384', 'HS512'],
        requiredClaims: ['exp'],
      })
      const aud = payload.aud
      const audOk =
        aud === undefined ||
        aud === '' ||
        aud === 'login' ||
        (Array.isArray(aud) && aud.length === 1 && aud[0] === 'login')
      if (!audOk || typeof payload.sub !== 'string' || payload.sub === '') throw fail()
      return { user: payload.sub, scheme: 'jwt_token', repositories: repositoriesOf(payload.sub) }
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
