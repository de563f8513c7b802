/**
 * Every API family switched on, and every route that takes a request body, for the edge tests
 * (truncated bodies, full disk, slow bodies, logs): one FERRY_CONFIG with lakeFS and bulk ingest,
 * credentials that the tests can later look for in logs, and a checker of each family's error
 * body.
 */
import { createHash, randomUUID } from 'node:crypto'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { nowSeconds, signJwt } from './jwt.js'
import { basicAuth, stagingBackingUrl } from './staging.js'
import { request } from './http.js'
import type { RawAnswer } from './raw-http.js'

/** Distinctive secrets: a test greps logs for each of them. */
export const SECRETS = {
  signingSecret: 'edge-signing-secret-7f3a91',
  lakefsJwtSecret: 'edge-lakefs-jwt-secret-c2d4e6',
  accessKeyId: 'AKIAEDGETEST',
  secretAccessKey: 'edge-secret-access-key-9b8c7d',
  ingestJwtSecret: 'edge-ingest-jwt-secret-0123456789ab',
} as const

export const INGEST_ISSUER = 'edge-issuer'
export const INGEST_AUDIENCE = 'http://edge-audience'
export const BASIC_AUTH = basicAuth(SECRETS.accessKeyId, SECRETS.secretAccessKey)

/**
 * Writes the FERRY_CONFIG file (lakeFS repository `repo1`, bulk ingest) into `dir`; answers its
 * path.
 */
export function writeFamiliesConfig(dir: string): string {
  const file = join(dir, 'ferry-edge-config.json')
  writeFileSync(
    file,
    JSON.stringify({
      lakefs: {
        signingSecret: SECRETS.signingSecret,
        jwtSecret: SECRETS.lakefsJwtSecret,
        credentials: [
          { accessKeyId: SECRETS.accessKeyId, secretAccessKey: SECRETS.secretAccessKey },
        ],
        repositories: [{ name: 'repo1', storageNamespace: 'local://repo1', branches: ['main'] }],
      },
      ingest: {
        jwt: { secret: SECRETS.ingestJwtSecret, issuer: INGEST_ISSUER, audience: INGEST_AUDIENCE },
      },
    }),
  )
  return file
}

/** A bulk-ingest bearer token (admin scope) signed with the configured secret. */
export async function ingestToken(): Promise<string> {
  const now = nowSeconds()
  const o = { iss: INGEST_ISSUER, aud: INGEST_AUDIENCE, iat: now - 10, exp: now + 3600 }
  return signJwt({ sub: 'edge-tester', scope: 'admin' }, { secret: SECRETS.ingestJwtSecret, ...o })
}

/** A lakeFS `jwt_token` bearer token for user `edge-tester`. */
export async function lakefsToken(): Promise<string> {
  const now = nowSeconds()
  return signJwt(
    { sub: 'edge-tester' },
    { secret: SECRETS.lakefsJwtSecret, iat: now - 10, exp: now + 3600 },
  )
}

/** A fresh presigned upload URL for `repo1/main/<path>` (the path part of it, for RawConn). */
export async function presignedTarget(
  base: string,
  path = `edge/${randomUUID()}.bin`,
): Promise<string> {
  const r = await request(stagingBackingUrl(base, 'repo1', 'main', path, '&presign=true'), {
    headers: { Authorization: BASIC_AUTH },
  })
  if (r.status !== 200) throw new Error(`presign: ${r.status} ${r.text()}`)
  const url = r.json<{ presigned_url: string }>().presigned_url
  const u = new URL(url)
  return u.pathname + u.search
}

export type FamilyName = 'imagestore' | 'shaman' | 'lakefs' | 's3' | 'ingest'

/** A route that takes a body. `target` may need a fresh URL per request (presigned PUT). */
export interface BodyRoute {
  readonly name: string
  readonly family: FamilyName
  readonly method: string
  readonly target: (base: string) => Promise<string>
  readonly headers: () => Promise<Record<string, string>>
  /** JSON routes take JSON only; file routes take raw, chunked or multipart bodies. */
  readonly kind: 'file' | 'json'
  /**
   * File routes: the exact body length the route expects (Content-Range / declared size), if any.
   */
  readonly bytes?: number
}

/** The sha256 of the 64 × 'x' a complete Shaman upload of these tests sends. */
export const SHA_OF_64_X = createHash('sha256').update('x'.repeat(64)).digest('hex')

export function bodyRoutes(): BodyRoute[] {
  const none = async () => ({})
  const guid = () => randomUUID()
  return [
    {
      name: 'ImageStore whole-file PUT',
      family: 'imagestore',
      method: 'PUT',
      kind: 'file',
      target: async () => `/ImageStore/edge/${guid()}.bin?api-version=6.0`,
      headers: none,
    },
    {
      name: 'ImageStore UploadChunk',
      family: 'imagestore',
      method: 'PUT',
      kind: 'file',
      bytes: 64,
      target: async () =>
        `/ImageStore/edge/${guid()}.bin/$/UploadChunk?api-version=6.0&session-id=${guid()}`,
      headers: async () => ({ 'Content-Range': 'bytes 0-63/64' }),
    },
    {
      name: 'ImageStore Copy (JSON)',
      family: 'imagestore',
      method: 'POST',
      kind: 'json',
      target: async () => '/ImageStore/$/Copy?api-version=6.0',
      headers: none,
    },
    {
      name: 'Shaman file upload',
      family: 'shaman',
      method: 'POST',
      kind: 'file',
      bytes: 64,
      target: async () => `/api/v3/shaman/files/${SHA_OF_64_X}/64`,
      headers: none,
    },
    {
      name: 'Shaman requirements (JSON)',
      family: 'shaman',
      method: 'POST',
      kind: 'json',
      target: async () => '/api/v3/shaman/checkout/requirements',
      headers: none,
    },
    {
      name: 'Shaman checkout (JSON)',
      family: 'shaman',
      method: 'POST',
      kind: 'json',
      target: async () => '/api/v3/shaman/checkout/create',
      headers: none,
    },
    {
      name: 'lakeFS presigned PUT',
      family: 's3',
      method: 'PUT',
      kind: 'file',
      target: (base) => presignedTarget(base),
      headers: none,
    },
    {
      name: 'lakeFS link (JSON)',
      family: 'lakefs',
      method: 'PUT',
      kind: 'json',
      target: async () =>
        `/api/v1/repositories/repo1/branches/main/staging/backing?path=edge/${guid()}`,
      headers: async () => ({ Authorization: BASIC_AUTH }),
    },
    {
      name: 'bulk-ingest upload',
      family: 'ingest',
      method: 'POST',
      kind: 'file',
      target: async () => `/projects/0a0b/bulk-ingest/ingest/${guid()}.txt`,
      headers: async () => ({ Authorization: `Bearer ${await ingestToken()}` }),
    },
  ]
}

/**
 * Checks that `a` is an error answer of `family`: a 4xx (or 5xx when `allow5xx`) with that
 * family's error body. Answers a description of what is wrong, or null when it is right.
 */
export function familyErrorProblem(
  family: FamilyName,
  a: RawAnswer,
  statuses: readonly number[],
): string | null {
  const text = a.body.toString('utf8')
  if (!statuses.includes(a.status))
    return `status ${a.status} not in ${statuses.join('/')}: ${text}`
  let json: unknown = null
  if (family !== 's3') {
    try {
      json = JSON.parse(text)
    } catch {
      return `body is not JSON: ${JSON.stringify(text)}`
    }
  }
  const o = json as Record<string, unknown>
  switch (family) {
    case 'imagestore': {
      const e = o?.['Error'] as Record<string, unknown> | undefined
      return typeof e?.['Code'] === 'string' && typeof e['Message'] === 'string'
        ? null
        : `not a FabricError: ${text}`
    }
    case 'shaman':
      return o?.['code'] === a.status && typeof o['message'] === 'string'
        ? null
        : `not a Shaman Error: ${text}`
    case 'lakefs':
      return typeof o?.['message'] === 'string' ? null : `not a lakeFS error: ${text}`
    case 's3':
      return /^<\?xml[^>]*>\s*<Error><Code>[A-Za-z]+<\/Code><Message>/.test(text)
        ? null
        : `not an S3 error: ${text}`
    case 'ingest':
      if (a.status === 400)
        return Array.isArray(o?.['errors']) ? null : `not a dsp-ingest BadRequest: ${text}`
      return typeof o?.['reason'] === 'string' || a.status === 503
        ? null
        : `not a dsp-ingest error: ${text}`
  }
}
