import { readFileSync } from 'node:fs'
import { resolve } from 'node:path'
import { availableParallelism } from 'node:os'
import { parseArgs } from 'node:util'
import { CorsConfigError, parseCorsOrigins, type CorsOrigins } from '../http/cors.js'
import { parseRedisUrl } from '../core/state/redis-url.js'
import { maskUrl } from '../observability/redact.js'

export type FsyncPolicy = 'commit' | 'chunk' | 'none'
export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent'

export interface LakeFsRepository {
  /** Repository name as it appears in `/repositories/{repository}`. */
  readonly name: string
  /** Where staged objects live, `local://<name>`; mapped under `<dataDir>/staging/`. */
  readonly storageNamespace: string
  /** Branches that may be linked to. */
  readonly branches: readonly string[]
}

export interface LakeFsConfig {
  /** HMAC key for physical-address signatures and presigned URLs. */
  readonly signingSecret: string
  /** HS256 key for `jwt_token` bearer auth. */
  readonly jwtSecret: string
  /** `repositories`: the repository names this key may reach; absent (null) = every repository. */
  readonly credentials: readonly {
    readonly accessKeyId: string
    readonly secretAccessKey: string
    readonly repositories: readonly string[] | null
  }[]
  readonly repositories: readonly LakeFsRepository[]
  /**
   * Per JWT subject (`sub`), the repositories it may reach. Null: every valid JWT reaches every
   * repository. When set, a subject not listed reaches none (401 "insufficient permissions").
   */
  readonly jwtSubjects: Readonly<Record<string, readonly string[]>> | null
  /**
   * Accept link requests for addresses Ferry did not sign (outside the namespace). Default false.
   */
  readonly allowExternalAddresses: boolean
  /** Lifetime of a presigned upload URL, seconds. Default 900. */
  readonly presignTtlSec: number
  /**
   * Offer lakeFS presigned multipart uploads (`/staging/pmpu`, advertised as
   * `pre_sign_multipart_upload`), which lakectl uses for files of 5 MiB or more. Default true;
   * false: those routes answer 501 and lakectl uploads in one PUT.
   */
  readonly presignMultipart: boolean
}

/** Where the families keep their files: the data directory, or an S3-compatible bucket. */
export type StorageBackend = 'fs' | 's3'

/**
 * FERRY_STORAGE=s3: the bucket every family keeps its objects in, each under its own key prefix.
 * Credentials are not configuration: the AWS SDK's default provider chain finds them
 * (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, AWS_PROFILE and the shared files, web identity,
 * instance metadata), so they never pass through Ferry's config or logs.
 */
export interface S3StorageConfig {
  /** FERRY_S3_ENDPOINT: `http(s)://host[:port]` of an S3-compatible store; null: AWS S3. */
  readonly endpoint: string | null
  /** FERRY_S3_BUCKET (required with FERRY_STORAGE=s3). */
  readonly bucket: string
  /** FERRY_S3_REGION. Default us-east-1. */
  readonly region: string
  /** FERRY_S3_PREFIX: Ferry's keys start with it (`''`, or normalised to end in `/`). */
  readonly prefix: string
  /**
   * FERRY_S3_FORCE_PATH_STYLE (true/false): `endpoint/bucket/key` rather than
   * `bucket.endpoint/key`. Default true when FERRY_S3_ENDPOINT is set, else false.
   */
  readonly forcePathStyle: boolean
}

export interface IngestConfig {
  /**
   * Bearer JWT checks: HS256 with `secret`; `iss` must equal `issuer`, `aud` must contain
   * `audience`.
   */
  readonly jwt: {
    readonly secret: string
    readonly issuer: string
    readonly audience: string
    /**
     * A token without `exp` is refused (401). Default true; false accepts such tokens forever, as
     * dsp-ingest does.
     */
    readonly requireExp: boolean
  }
  /**
   * Files of one bulk ingest processed at once (dsp-ingest's INGEST_BULK_MAX_PARALLEL). Default 8.
   */
  readonly maxParallel: number
  /**
   * How long a request waits for a busy project lock before it answers 409 "in progress", ms.
   * Default 400, dsp-ingest's semaphore wait.
   */
  readonly lockWaitMs: number
  /**
   * How long an upload's publish (a rename) waits behind other uploads' publishes, ms. Default
   * 30000. Unlike dsp-ingest, concurrent uploads to one project do not refuse each other; a
   * running ingest still refuses them at once.
   */
  readonly publishWaitMs: number
}

/**
 * Bearer-token auth of a family that its real API leaves open (ImageStore, Shaman). A request must
 * carry `Authorization: Bearer <t>` where `t` is one of `tokens` (compared in constant time) or an
 * HS256 JWT signed with `jwt.secret`. Null: the family is open to anyone who reaches the port.
 */
export interface BearerAuthConfig {
  readonly tokens: readonly string[]
  readonly jwt: {
    readonly secret: string
    /** `iss` must equal this when set. */
    readonly issuer: string | null
    /** `aud` must contain this when set. */
    readonly audience: string | null
    /** Tokens without `exp` are refused unless false. Default true. */
    readonly requireExp: boolean
  } | null
}

export type FamilyName = 'imagestore' | 'shaman' | 'lakefs' | 'ingest' | 'tus'
export const FAMILY_NAMES: readonly FamilyName[] = [
  'imagestore',
  'shaman',
  'lakefs',
  'ingest',
  'tus',
]

/** Everything Ferry reads at start, validated and frozen. `loadConfig` is its only maker. */
export interface Config {
  readonly http: {
    /** Listen address; 127.0.0.1 unless told otherwise. */
    readonly host: string
    /** Listen port; 0 picks a free one (tests). */
    readonly port: number
    /** Longest a whole request may take, ms (node:http `requestTimeout`); 0 disables. */
    readonly requestTimeoutMs: number
    /** A socket that sends nothing for this long is closed, ms. */
    readonly idleTimeoutMs: number
    /** SIGTERM: how long in-flight requests may still run before the process exits, ms. */
    readonly shutdownTimeoutMs: number
    /**
     * A request body slower than this on average over the window is answered 408 and closed,
     * bytes/s; 0 disables.
     */
    readonly minBodyRateBytesPerSec: number
    /** The window over which the body rate is averaged, s. */
    readonly minBodyRateWindowSec: number
    /**
     * Origin (optionally with a path prefix, no trailing slash) of every URL Ferry hands out, such
     * as lakeFS presigned URLs: `https://uploads.example.org`. Null: taken from the request's Host.
     */
    readonly publicUrl: string | null
    /**
     * SIGTERM: how long the instance keeps serving with `/readyz` at 503 before it stops
     * accepting, so a load balancer's health check takes it out of rotation first, ms.
     */
    readonly drainDelayMs: number
    /** `GET /metrics` asks for `Authorization: Bearer <token>` when set; null: open. */
    readonly metricsToken: string | null
  }
  readonly storage: {
    /** Root of tmp/, store/, cas/, checkouts/, staging/, ingest/, state/ (one filesystem). */
    readonly dataDir: string
    /**
     * `commit`: fsync once at commit (default); `chunk`: fdatasync every chunk before it counts;
     * `none` (opt-in): no fdatasync or fsync in the data path or the embedded state journal, for
     * benchmarks and storage already durable below the filesystem (publication stays atomic by
     * rename; a crash of the host may lose recent files).
     */
    readonly fsync: FsyncPolicy
    /**
     * `/readyz` reports not ready while the data directory's filesystem has less free space,
     * bytes (FERRY_MIN_FREE_BYTES, or its older name FERRY_READY_MIN_FREE_BYTES); 0 disables.
     */
    readonly readyMinFreeBytes: number
    /**
     * FERRY_STORAGE: `fs` (default) keeps published files in the data directory; `s3` keeps them
     * in `s3`'s bucket (the data directory still holds temp files, staging and checkouts).
     */
    readonly backend: StorageBackend
    /** The bucket, with FERRY_STORAGE=s3; null otherwise. */
    readonly s3: S3StorageConfig | null
  }
  readonly redis: {
    /**
     * `redis://…` (one server), `redis+sentinel://…/<master>` or `redis+cluster://…` (see
     * redis-url.ts); null selects the embedded store in `<dataDir>/state`.
     */
    readonly url: string | null
    /** Prefix of every key Ferry writes, so several deployments can share one Redis. */
    readonly prefix: string
  }
  readonly pool: {
    /** Worker threads for hashing and commit work. */
    readonly workers: number
    /** Running hashes (one per upload as it arrives) that one stream thread follows at once. */
    readonly streamsPerThread: number
    /** A running hash that hears nothing for this long gives its slot back, ms. */
    readonly streamIdleMs: number
  }
  readonly sessions: {
    /** A session with no chunk for this long is removed with its temp file, s. */
    readonly ttlSec: number
    /** How often the sweeper looks for expired sessions and orphaned temp files, s. */
    readonly sweepIntervalSec: number
    /** A chunk's range reservation lives this long unless renewed while its body streams, ms. */
    readonly reserveLeaseMs: number
    /** A commit's lease on its session, renewed while it runs, ms. */
    readonly commitLeaseMs: number
    /**
     * Sessions held at once (committed ones until they expire included); 503 beyond. 0: no bound.
     */
    readonly maxSessions: number
    /** Separate received ranges one session may hold; 400 beyond. */
    readonly maxRangesPerSession: number
    /** Chunks one session may receive; 400 beyond. */
    readonly maxChunksPerSession: number
    /** Smallest chunk accepted except the last one of a file, bytes. */
    readonly minChunkBytes: number
  }
  readonly cluster: {
    /**
     * An instance that has not renewed its liveness key for this long is dead: its leases are
     * broken, ms.
     */
    readonly livenessMs: number
    /** Longest a Redis command may wait (an outage answers 503 after it), ms. */
    readonly redisTimeoutMs: number
  }
  readonly limits: {
    /** Largest single upload (whole file or session total), bytes. */
    readonly maxUploadBytes: number
    /** Largest JSON request body, bytes. */
    readonly maxJsonBytes: number
  }
  readonly locks: {
    /** Lifetime of a lock or in-flight claim unless renewed, ms. Renewed every third of it. */
    readonly ttlMs: number
  }
  readonly imagestore: {
    /**
     * Mounted under /ImageStore. FERRY_CONFIG `imagestore.enabled`, or left out of FERRY_FAMILIES.
     * Default true.
     */
    readonly enabled: boolean
    /** FERRY_CONFIG `imagestore.auth`; null (default): no authentication. */
    readonly auth: BearerAuthConfig | null
    /**
     * Most entries (files + folders) one listing answers; the rest is paged with ContinuationToken.
     */
    readonly listPageSize: number
  }
  readonly shaman: {
    /**
     * Mounted under /api/v3/shaman. FERRY_CONFIG `shaman.enabled`, or left out of FERRY_FAMILIES.
     * Default true.
     */
    readonly enabled: boolean
    /** FERRY_CONFIG `shaman.auth`; null (default): no authentication. */
    readonly auth: BearerAuthConfig | null
    /** Blobs untouched for this long and used by no checkout are collected, s. */
    readonly gcMaxAgeSec: number
    /** Garbage collection period, s; 0 disables it. */
    readonly gcIntervalSec: number
    /** Threads that parse requirements and checkout file lists and look their blobs up. */
    readonly fileListThreads: number
  }
  readonly tus: {
    /** Mounted at `path`. Left out of FERRY_FAMILIES: off. Default true. */
    readonly enabled: boolean
    /** FERRY_TUS_PATH: the endpoint, starting and ending with `/`. Default `/files/`. */
    readonly path: string
    /** FERRY_TUS_MAX_SIZE: `Tus-Max-Size`, bytes (413 beyond). 0: FERRY_MAX_UPLOAD_BYTES. */
    readonly maxSizeBytes: number
    /** FERRY_TUS_RETENTION_SEC: finished uploads are removed after this long, s; 0 keeps them. */
    readonly retentionSec: number
  }
  /** FERRY_CORS_ORIGINS for the browser-facing routes (tus, lakeFS presigned PUTs). */
  readonly cors: CorsOrigins
  readonly ui: {
    /** FERRY_UI (on|off): the browser uploader page. Default on when tus is mounted. */
    readonly enabled: boolean
    /** FERRY_UI_PATH: where the page is served, starting and ending with `/`. Default `/`. */
    readonly path: string
  }
  readonly hooks: {
    /** FERRY_HOOK_URL: where pre-create / post-finish / post-terminate are POSTed; null: none. */
    readonly url: string | null
  }
  /** Null: the lakeFS family is off (no FERRY_CONFIG `lakefs`, or left out of FERRY_FAMILIES). */
  readonly lakefs: LakeFsConfig | null
  /**
   * Null: the bulk-ingest family is off (no FERRY_CONFIG `ingest`, or left out of FERRY_FAMILIES).
   */
  readonly ingest: IngestConfig | null
  readonly logLevel: LogLevel
}

const GIB = 1024 ** 3

export const DEFAULTS: Config = deepFreeze({
  http: {
    host: '127.0.0.1',
    port: 8080,
    requestTimeoutMs: 0,
    idleTimeoutMs: 60_000,
    shutdownTimeoutMs: 10_000,
    minBodyRateBytesPerSec: 1024,
    minBodyRateWindowSec: 60,
    publicUrl: null,
    drainDelayMs: 0,
    metricsToken: null,
  },
  storage: {
    dataDir: './data',
    fsync: 'commit',
    readyMinFreeBytes: 64 * 1024 * 1024,
    backend: 'fs',
    s3: null,
  },
  redis: { url: null, prefix: 'ferry:' },
  // 8 running hashes per stream thread: on 2 threads all of 8 parallel uploads hash as they
  // arrive (see hash-pool.ts).
  pool: {
    workers: Math.max(2, Math.min(4, availableParallelism())),
    streamsPerThread: 8,
    streamIdleMs: 30_000,
  },
  sessions: {
    ttlSec: 1800,
    sweepIntervalSec: 60,
    reserveLeaseMs: 15_000,
    commitLeaseMs: 30_000,
    maxSessions: 10_000,
    maxRangesPerSession: 256,
    maxChunksPerSession: 100_000,
    minChunkBytes: 64 * 1024,
  },
  cluster: { livenessMs: 3000, redisTimeoutMs: 2000 },
  limits: { maxUploadBytes: 64 * GIB, maxJsonBytes: 8 * 1024 * 1024 },
  locks: { ttlMs: 30_000 },
  imagestore: { enabled: true, auth: null, listPageSize: 1000 },
  // Two file-list threads keep one slow list from holding up the next.
  shaman: {
    enabled: true,
    auth: null,
    gcMaxAgeSec: 31 * 24 * 3600,
    gcIntervalSec: 24 * 3600,
    fileListThreads: 2,
  },
  tus: { enabled: true, path: '/files/', maxSizeBytes: 0, retentionSec: 0 },
  cors: { mode: 'any' },
  ui: { enabled: true, path: '/' },
  hooks: { url: null },
  lakefs: null,
  ingest: null,
  logLevel: 'info',
} satisfies Config)

/**
 * Defaults of the optional FERRY_CONFIG sections (`lakefs`, `ingest`), applied when a section is
 * present: DEFAULTS holds null for the sections themselves.
 */
type IngestTunable = 'maxParallel' | 'lockWaitMs' | 'publishWaitMs'

export const SECTION_DEFAULTS = deepFreeze({
  lakefs: { presignTtlSec: 900, allowExternalAddresses: false, presignMultipart: true },
  ingest: { maxParallel: 8, requireExp: true, lockWaitMs: 400, publishWaitMs: 30_000 },
} as const satisfies {
  lakefs: Pick<LakeFsConfig, 'presignTtlSec' | 'allowExternalAddresses' | 'presignMultipart'>
  ingest: Pick<IngestConfig, IngestTunable> & { requireExp: boolean }
})

export class ConfigError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'ConfigError'
  }
}

type Env = Readonly<Record<string, string | undefined>>

/** FERRY_MIN_FREE_BYTES (issue 13's name) wins over FERRY_READY_MIN_FREE_BYTES, its alias. */
function minFreeBytesFrom(env: Env): number {
  const key = env['FERRY_MIN_FREE_BYTES'] ? 'FERRY_MIN_FREE_BYTES' : 'FERRY_READY_MIN_FREE_BYTES'
  return intFrom(key, env[key], DEFAULTS.storage.readyMinFreeBytes, 0)
}

function intFrom(
  key: string,
  raw: string | undefined,
  def: number,
  min: number,
  max = Number.MAX_SAFE_INTEGER,
): number {
  if (raw === undefined || raw === '') return def
  if (!/^\d+$/.test(raw.trim()))
    throw new ConfigError(`${key} must be a whole number, got "${raw}"`)
  const n = Number(raw.trim())
  if (!Number.isSafeInteger(n) || n < min || n > max) {
    throw new ConfigError(`${key} must be between ${min} and ${max}, got ${raw}`)
  }
  return n
}

function oneOf<T extends string>(
  key: string,
  raw: string | undefined,
  def: T,
  allowed: readonly T[],
): T {
  if (raw === undefined || raw === '') return def
  if (!(allowed as readonly string[]).includes(raw)) {
    throw new ConfigError(`${key} must be one of ${allowed.join(', ')}, got "${raw}"`)
  }
  return raw as T
}

const S3_KEYS = [
  'FERRY_S3_ENDPOINT',
  'FERRY_S3_BUCKET',
  'FERRY_S3_REGION',
  'FERRY_S3_PREFIX',
  'FERRY_S3_FORCE_PATH_STYLE',
] as const

/** FERRY_STORAGE and, with `s3`, the FERRY_S3_* settings. */
function storageBackendFrom(env: Env): Pick<Config['storage'], 'backend' | 's3'> {
  const backend = oneOf<StorageBackend>(
    'FERRY_STORAGE',
    env['FERRY_STORAGE']?.trim(),
    DEFAULTS.storage.backend,
    ['fs', 's3'],
  )
  const given = S3_KEYS.filter((k) => (env[k] ?? '').trim() !== '')
  if (backend === 'fs') {
    if (given.length > 0) {
      throw new ConfigError(
        `${given.join(', ')} set, but FERRY_STORAGE is fs: set FERRY_STORAGE=s3`,
      )
    }
    return { backend, s3: null }
  }
  const bucket = (env['FERRY_S3_BUCKET'] ?? '').trim()
  if (bucket === '') throw new ConfigError('FERRY_STORAGE=s3 needs FERRY_S3_BUCKET')
  // S3's bucket names, with the upper case and underscores older stores (and Swift) allow.
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{1,253}[A-Za-z0-9]$/.test(bucket)) {
    throw new ConfigError(`FERRY_S3_BUCKET is not a bucket name: "${bucket}"`)
  }
  const rawEndpoint = (env['FERRY_S3_ENDPOINT'] ?? '').trim()
  let endpoint: string | null = null
  if (rawEndpoint !== '') {
    let u: URL
    try {
      u = new URL(rawEndpoint)
    } catch {
      throw new ConfigError(
        `FERRY_S3_ENDPOINT must be an http(s) URL, got "${maskUrl(rawEndpoint)}"`,
      )
    }
    if (u.protocol !== 'http:' && u.protocol !== 'https:') {
      throw new ConfigError(
        `FERRY_S3_ENDPOINT must be an http(s) URL, got "${maskUrl(rawEndpoint)}"`,
      )
    }
    if (u.username !== '' || u.password !== '') {
      throw new ConfigError(
        'FERRY_S3_ENDPOINT must not hold credentials: Ferry takes them from the AWS SDK ' +
          'default chain (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, AWS_PROFILE)',
      )
    }
    if ((u.pathname !== '/' && u.pathname !== '') || u.search !== '' || u.hash !== '') {
      throw new ConfigError(`FERRY_S3_ENDPOINT must be scheme://host[:port], got "${rawEndpoint}"`)
    }
    endpoint = u.origin
  }
  const region = (env['FERRY_S3_REGION'] ?? '').trim() || 'us-east-1'
  if (!/^[a-z0-9-]{1,64}$/.test(region)) {
    throw new ConfigError(`FERRY_S3_REGION must be a region name like us-east-1, got "${region}"`)
  }
  const rawPrefix = (env['FERRY_S3_PREFIX'] ?? '').trim().replace(/\/+$/, '')
  let prefix = ''
  if (rawPrefix !== '') {
    if (
      !/^[A-Za-z0-9._-]+(\/[A-Za-z0-9._-]+)*$/.test(rawPrefix) ||
      /(^|\/)\.\.?(\/|$)/.test(rawPrefix)
    ) {
      throw new ConfigError(
        `FERRY_S3_PREFIX must be segments of letters, digits and ._- separated by /, got "${rawPrefix}"`,
      )
    }
    prefix = `${rawPrefix}/`
  }
  const rawStyle = (env['FERRY_S3_FORCE_PATH_STYLE'] ?? '').trim().toLowerCase()
  let forcePathStyle = endpoint !== null
  if (rawStyle === 'true' || rawStyle === '1') forcePathStyle = true
  else if (rawStyle === 'false' || rawStyle === '0') forcePathStyle = false
  else if (rawStyle !== '') {
    throw new ConfigError(`FERRY_S3_FORCE_PATH_STYLE must be true or false, got "${rawStyle}"`)
  }
  return { backend, s3: { endpoint, bucket, region, prefix, forcePathStyle } }
}

/** FERRY_TUS_PATH: an absolute path of safe characters, with one `/` at each end. */
function tusPathFrom(raw: string | undefined): string {
  if (raw === undefined || raw === '') return DEFAULTS.tus.path
  const p = `/${raw.trim().replace(/^\/+|\/+$/g, '')}/`
  const dots = p.split('/').some((seg) => seg === '.' || seg === '..')
  if (!/^(\/[A-Za-z0-9._~-]+)+\/$/.test(p) || dots) {
    throw new ConfigError(`FERRY_TUS_PATH must be a path like /files/, got "${raw}"`)
  }
  return p
}

/** FERRY_UI_PATH other than `/`: the same shape as FERRY_TUS_PATH. */
function uiPathFrom(raw: string): string {
  const p = `/${raw.trim().replace(/^\/+|\/+$/g, '')}/`
  const dots = p.split('/').some((seg) => seg === '.' || seg === '..')
  if (!/^(\/[A-Za-z0-9._~-]+)+\/$/.test(p) || dots) {
    throw new ConfigError(`FERRY_UI_PATH must be a path like /upload/, got "${raw}"`)
  }
  return p
}

/**
 * FERRY_UI and FERRY_UI_PATH. The page talks to the tus endpoint only, so it is on by default
 * when tus is mounted and cannot be turned on without it; its path must not be one the tus
 * endpoint would also claim.
 */
function uiFrom(env: Env, tusEnabled: boolean, tusPath: string): Config['ui'] {
  const raw = (env['FERRY_UI'] ?? '').trim().toLowerCase()
  if (raw !== '' && raw !== 'on' && raw !== 'off') {
    throw new ConfigError(`FERRY_UI must be on or off, got "${env['FERRY_UI']}"`)
  }
  const rawPath = env['FERRY_UI_PATH']
  const path =
    rawPath === undefined || rawPath.trim() === '' || rawPath.trim() === '/'
      ? DEFAULTS.ui.path
      : uiPathFrom(rawPath)
  if (raw === 'off') return { enabled: false, path }
  if (!tusEnabled) {
    if (raw === 'on')
      throw new ConfigError('FERRY_UI=on needs the tus family, which is not mounted')
    return { enabled: false, path }
  }
  if (path !== '/' && (path.startsWith(tusPath) || tusPath.startsWith(path))) {
    throw new ConfigError(`FERRY_UI_PATH ${path} overlaps the tus endpoint ${tusPath}`)
  }
  return { enabled: true, path }
}

/** FERRY_HOOK_URL: an absolute http(s) URL (user info allowed: it becomes Basic auth). */
function hookUrlFrom(raw: string | undefined): string | null {
  if (raw === undefined || raw.trim() === '') return null
  let u: URL
  try {
    u = new URL(raw.trim())
  } catch {
    throw new ConfigError(
      `FERRY_HOOK_URL must be an absolute http:// or https:// URL, got "${maskUrl(raw)}"`,
    )
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') {
    throw new ConfigError(`FERRY_HOOK_URL must use http:// or https://, got "${u.protocol}"`)
  }
  return u.href
}

function corsFrom(raw: string | undefined): CorsOrigins {
  try {
    return parseCorsOrigins(raw)
  } catch (err) {
    if (err instanceof CorsConfigError) throw new ConfigError(err.message)
    throw err
  }
}

/**
 * FERRY_PUBLIC_URL: an absolute http(s) URL without query, fragment or userinfo; the trailing slash
 * dropped.
 */
function publicUrlFrom(raw: string | undefined): string | null {
  if (raw === undefined || raw === '') return null
  let u: URL
  try {
    u = new URL(raw)
  } catch {
    throw new ConfigError(
      `FERRY_PUBLIC_URL must be an absolute http:// or https:// URL, got "${maskUrl(raw)}"`,
    )
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:')
    throw new ConfigError(`FERRY_PUBLIC_URL must use http:// or https://, got "${u.protocol}"`)
  if (u.search !== '' || raw.includes('?'))
    throw new ConfigError('FERRY_PUBLIC_URL must not have a query string')
  if (u.hash !== '' || raw.includes('#'))
    throw new ConfigError('FERRY_PUBLIC_URL must not have a fragment')
  if (u.username !== '' || u.password !== '')
    throw new ConfigError('FERRY_PUBLIC_URL must not carry a user name or password')
  return `${u.origin}${u.pathname.replace(/\/+$/, '')}`
}

function nonEmpty(key: string, raw: unknown): string {
  if (typeof raw !== 'string' || raw.length === 0)
    throw new ConfigError(`${key} must be a non-empty string`)
  return raw
}

function onlyKeys(key: string, obj: unknown, allowed: readonly string[]): Record<string, unknown> {
  if (typeof obj !== 'object' || obj === null || Array.isArray(obj)) {
    throw new ConfigError(`${key} must be an object`)
  }
  for (const k of Object.keys(obj)) {
    if (!allowed.includes(k)) throw new ConfigError(`${key}.${k} is not a known key`)
  }
  return obj as Record<string, unknown>
}

function parseLakeFs(raw: unknown): LakeFsConfig {
  const o = onlyKeys('FERRY_CONFIG.lakefs', raw, [
    'signingSecret',
    'jwtSecret',
    'credentials',
    'repositories',
    'allowExternalAddresses',
    'presignTtlSec',
    'jwtSubjects',
    'presignMultipart',
  ])
  const creds = o['credentials'] ?? []
  if (!Array.isArray(creds))
    throw new ConfigError('FERRY_CONFIG.lakefs.credentials must be an array')
  const repos = o['repositories'] ?? []
  if (!Array.isArray(repos))
    throw new ConfigError('FERRY_CONFIG.lakefs.repositories must be an array')
  const presign = o['presignTtlSec'] ?? SECTION_DEFAULTS.lakefs.presignTtlSec
  if (typeof presign !== 'number' || !Number.isSafeInteger(presign) || presign < 1) {
    throw new ConfigError('FERRY_CONFIG.lakefs.presignTtlSec must be a positive whole number')
  }
  const allowExt = o['allowExternalAddresses'] ?? SECTION_DEFAULTS.lakefs.allowExternalAddresses
  if (typeof allowExt !== 'boolean')
    throw new ConfigError('FERRY_CONFIG.lakefs.allowExternalAddresses must be a boolean')
  const multipart = o['presignMultipart'] ?? SECTION_DEFAULTS.lakefs.presignMultipart
  if (typeof multipart !== 'boolean') {
    throw new ConfigError('FERRY_CONFIG.lakefs.presignMultipart must be a boolean')
  }
  const out: LakeFsConfig = {
    signingSecret: nonEmpty('FERRY_CONFIG.lakefs.signingSecret', o['signingSecret']),
    jwtSecret: nonEmpty('FERRY_CONFIG.lakefs.jwtSecret', o['jwtSecret']),
    credentials: creds.map((c, i) => {
      const k = `FERRY_CONFIG.lakefs.credentials[${i}]`
      const co = onlyKeys(k, c, ['accessKeyId', 'secretAccessKey', 'repositories'])
      return {
        accessKeyId: nonEmpty(`${k}.accessKeyId`, co['accessKeyId']),
        secretAccessKey: nonEmpty(`${k}.secretAccessKey`, co['secretAccessKey']),
        repositories:
          co['repositories'] === undefined
            ? null
            : stringList(`${k}.repositories`, co['repositories']),
      }
    }),
    repositories: repos.map((r, i) => {
      const k = `FERRY_CONFIG.lakefs.repositories[${i}]`
      const ro = onlyKeys(k, r, ['name', 'storageNamespace', 'branches'])
      const branches = ro['branches']
      if (!Array.isArray(branches) || branches.length === 0)
        throw new ConfigError(`${k}.branches must be a non-empty array`)
      // lakeFS's own name rules; names also become folders under <dataDir>/staging.
      const name = nonEmpty(`${k}.name`, ro['name'])
      if (!/^[a-z0-9][a-z0-9-]{2,62}$/.test(name))
        throw new ConfigError(
          `${k}.name must match ^[a-z0-9][a-z0-9-]{2,62}$ (lakeFS repository id)`,
        )
      const ns = nonEmpty(`${k}.storageNamespace`, ro['storageNamespace'])
      if (!/^[a-z][a-z0-9+.-]*:\/\/[^\s,?#]+$/i.test(ns))
        throw new ConfigError(`${k}.storageNamespace must be a URI such as local://${name}`)
      return {
        name,
        storageNamespace: ns,
        branches: branches.map((b, j) => {
          const branch = nonEmpty(`${k}.branches[${j}]`, b)
          if (!/^\w[-\w]*$/.test(branch) || branch.length > 255)
            throw new ConfigError(`${k}.branches[${j}] must match ^\\w[-\\w]*$ (lakeFS branch id)`)
          return branch
        }),
      }
    }),
    allowExternalAddresses: allowExt,
    presignTtlSec: presign,
    presignMultipart: multipart,
    jwtSubjects: null,
  }
  const names = new Set<string>()
  for (const r of out.repositories) {
    if (names.has(r.name))
      throw new ConfigError(`FERRY_CONFIG.lakefs.repositories: "${r.name}" is listed twice`)
    names.add(r.name)
  }
  // An allow-list naming a repository that is not configured is a typo that would lock a user out.
  const known = (key: string, list: readonly string[]) => {
    for (const n of list)
      if (!names.has(n)) throw new ConfigError(`${key}: "${n}" is not a configured repository`)
  }
  out.credentials.forEach((c, i) => {
    if (c.repositories) known(`FERRY_CONFIG.lakefs.credentials[${i}].repositories`, c.repositories)
  })
  const subjects = o['jwtSubjects']
  if (subjects === undefined) return out
  if (typeof subjects !== 'object' || subjects === null || Array.isArray(subjects)) {
    throw new ConfigError(
      'FERRY_CONFIG.lakefs.jwtSubjects must be an object of subject → repository names',
    )
  }
  const so = subjects as Record<string, unknown>
  const map: Record<string, readonly string[]> = Object.create(null) as Record<
    string,
    readonly string[]
  >
  for (const [sub, list] of Object.entries(so)) {
    const key = `FERRY_CONFIG.lakefs.jwtSubjects.${sub}`
    map[sub] = stringList(key, list)
    known(key, map[sub])
  }
  return { ...out, jwtSubjects: map }
}

function stringList(key: string, raw: unknown): string[] {
  if (!Array.isArray(raw)) throw new ConfigError(`${key} must be an array of strings`)
  return raw.map((v, i) => nonEmpty(`${key}[${i}]`, v))
}

function optionalBool(key: string, raw: unknown, def: boolean): boolean {
  if (raw === undefined) return def
  if (typeof raw !== 'boolean') throw new ConfigError(`${key} must be true or false`)
  return raw
}

function parseBearerAuth(key: string, raw: unknown): BearerAuthConfig {
  const o = onlyKeys(key, raw, ['tokens', 'jwt'])
  const tokens = o['tokens'] === undefined ? [] : stringList(`${key}.tokens`, o['tokens'])
  // A short static token can be guessed; 16 characters is the least we take.
  tokens.forEach((t, i) => {
    if (t.length < 16) throw new ConfigError(`${key}.tokens[${i}] must be at least 16 characters`)
  })
  let jwt: BearerAuthConfig['jwt'] = null
  if (o['jwt'] !== undefined) {
    const j = onlyKeys(`${key}.jwt`, o['jwt'], ['secret', 'issuer', 'audience', 'requireExp'])
    jwt = {
      secret: nonEmpty(`${key}.jwt.secret`, j['secret']),
      issuer: j['issuer'] === undefined ? null : nonEmpty(`${key}.jwt.issuer`, j['issuer']),
      audience: j['audience'] === undefined ? null : nonEmpty(`${key}.jwt.audience`, j['audience']),
      requireExp: optionalBool(`${key}.jwt.requireExp`, j['requireExp'], true),
    }
  }
  if (tokens.length === 0 && jwt === null)
    throw new ConfigError(`${key} needs tokens or jwt (leave auth out for an open family)`)
  return { tokens, jwt }
}

interface FamilySection {
  readonly enabled: boolean
  readonly auth: BearerAuthConfig | null
}

function parseFamilySection(name: 'imagestore' | 'shaman', raw: unknown): FamilySection {
  const key = `FERRY_CONFIG.${name}`
  const o = onlyKeys(key, raw, ['enabled', 'auth'])
  return {
    enabled: optionalBool(`${key}.enabled`, o['enabled'], true),
    auth: o['auth'] === undefined ? null : parseBearerAuth(`${key}.auth`, o['auth']),
  }
}

/**
 * FERRY_FAMILIES: comma-separated family names to mount; unset or empty: every configured family.
 */
function parseFamilies(raw: string | undefined): ReadonlySet<FamilyName> | null {
  if (raw === undefined || raw.trim() === '') return null
  const out = new Set<FamilyName>()
  for (const part of raw
    .split(',')
    .map((p) => p.trim().toLowerCase())
    .filter((p) => p !== '')) {
    if (!(FAMILY_NAMES as readonly string[]).includes(part)) {
      throw new ConfigError(
        `FERRY_FAMILIES: unknown family "${part}"; known: ${FAMILY_NAMES.join(', ')}`,
      )
    }
    out.add(part as FamilyName)
  }
  return out
}

function parseIngest(raw: unknown): IngestConfig {
  const o = onlyKeys('FERRY_CONFIG.ingest', raw, [
    'jwt',
    'maxParallel',
    'lockWaitMs',
    'publishWaitMs',
  ])
  const j = onlyKeys('FERRY_CONFIG.ingest.jwt', o['jwt'], [
    'secret',
    'issuer',
    'audience',
    'requireExp',
  ])
  const d = SECTION_DEFAULTS.ingest
  const whole = (key: IngestTunable, def: number, min: number, max: number) => {
    const v = o[key] ?? def
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min || v > max) {
      const rule = `must be a whole number from ${min} to ${max}`
      throw new ConfigError(`FERRY_CONFIG.ingest.${key} ${rule}`)
    }
    return v
  }
  const maxParallel = whole('maxParallel', d.maxParallel, 1, 64)
  return {
    jwt: {
      secret: nonEmpty('FERRY_CONFIG.ingest.jwt.secret', j['secret']),
      issuer: nonEmpty('FERRY_CONFIG.ingest.jwt.issuer', j['issuer']),
      audience: nonEmpty('FERRY_CONFIG.ingest.jwt.audience', j['audience']),
      requireExp: optionalBool('FERRY_CONFIG.ingest.jwt.requireExp', j['requireExp'], d.requireExp),
    },
    maxParallel,
    lockWaitMs: whole('lockWaitMs', d.lockWaitMs, 0, 3_600_000),
    publishWaitMs: whole('publishWaitMs', d.publishWaitMs, 0, 3_600_000),
  }
}

interface ConfigFile {
  lakefs: LakeFsConfig | null
  ingest: IngestConfig | null
  imagestore: FamilySection | null
  shaman: FamilySection | null
}

function readConfigFile(path: string): ConfigFile {
  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch (err) {
    throw new ConfigError(`FERRY_CONFIG: cannot read ${path}: ${(err as Error).message}`)
  }
  let doc: unknown
  try {
    doc = JSON.parse(text)
  } catch (err) {
    throw new ConfigError(`FERRY_CONFIG: ${path} is not valid JSON: ${(err as Error).message}`)
  }
  const o = onlyKeys('FERRY_CONFIG', doc, ['lakefs', 'ingest', 'imagestore', 'shaman'])
  return {
    lakefs: o['lakefs'] === undefined ? null : parseLakeFs(o['lakefs']),
    ingest: o['ingest'] === undefined ? null : parseIngest(o['ingest']),
    imagestore:
      o['imagestore'] === undefined ? null : parseFamilySection('imagestore', o['imagestore']),
    shaman: o['shaman'] === undefined ? null : parseFamilySection('shaman', o['shaman']),
  }
}

/**
 * Reads the environment (and command-line flags, which win) once, validates every value and
 * returns a frozen Config. A bad value throws ConfigError naming the key. The only reader of
 * process.env in Ferry is the caller passing it in.
 */
export function loadConfig(env: Env, argv: readonly string[] = []): Config {
  const { values: flags } = parseArgs({
    args: [...argv],
    options: {
      host: { type: 'string' },
      port: { type: 'string' },
      'data-dir': { type: 'string' },
      'redis-url': { type: 'string' },
      workers: { type: 'string' },
    },
    strict: true,
  })
  const host = flags.host ?? env['FERRY_HOST'] ?? DEFAULTS.http.host
  if (host.length === 0) throw new ConfigError('FERRY_HOST must not be empty')
  const redisUrl = flags['redis-url'] ?? env['REDIS_URL']
  if (redisUrl !== undefined && redisUrl !== '') {
    try {
      parseRedisUrl(redisUrl)
    } catch (err) {
      throw new ConfigError(`REDIS_URL ${(err as Error).message}, got "${maskUrl(redisUrl)}"`)
    }
  }
  const prefix = env['FERRY_REDIS_PREFIX'] ?? DEFAULTS.redis.prefix
  if (!/^[A-Za-z0-9:_.{}-]{1,64}$/.test(prefix)) {
    throw new ConfigError(
      'FERRY_REDIS_PREFIX must be 1-64 characters of letters, digits and :_.{}-',
    )
  }
  const file: ConfigFile = env['FERRY_CONFIG']
    ? readConfigFile(env['FERRY_CONFIG'])
    : { lakefs: null, ingest: null, imagestore: null, shaman: null }
  const only = parseFamilies(env['FERRY_FAMILIES'])
  const on = (name: FamilyName, configured: boolean, enabled = true): boolean => {
    if (only === null) return configured && enabled
    if (!only.has(name)) return false
    if (!configured)
      throw new ConfigError(`FERRY_FAMILIES names ${name}, but FERRY_CONFIG has no ${name} section`)
    if (!enabled)
      throw new ConfigError(
        `FERRY_FAMILIES names ${name}, but FERRY_CONFIG.${name}.enabled is false`,
      )
    return true
  }
  const config: Config = {
    http: {
      host,
      port: intFrom(
        flags.port !== undefined ? '--port' : 'FERRY_PORT',
        flags.port ?? env['FERRY_PORT'],
        DEFAULTS.http.port,
        0,
        65535,
      ),
      requestTimeoutMs: intFrom(
        'FERRY_REQUEST_TIMEOUT_MS',
        env['FERRY_REQUEST_TIMEOUT_MS'],
        DEFAULTS.http.requestTimeoutMs,
        0,
      ),
      idleTimeoutMs: intFrom(
        'FERRY_IDLE_TIMEOUT_MS',
        env['FERRY_IDLE_TIMEOUT_MS'],
        DEFAULTS.http.idleTimeoutMs,
        100,
      ),
      shutdownTimeoutMs: intFrom(
        'FERRY_SHUTDOWN_TIMEOUT_MS',
        env['FERRY_SHUTDOWN_TIMEOUT_MS'],
        DEFAULTS.http.shutdownTimeoutMs,
        0,
      ),
      minBodyRateBytesPerSec: intFrom(
        'FERRY_MIN_BODY_RATE_BYTES_PER_SEC',
        env['FERRY_MIN_BODY_RATE_BYTES_PER_SEC'],
        DEFAULTS.http.minBodyRateBytesPerSec,
        0,
      ),
      minBodyRateWindowSec: intFrom(
        'FERRY_MIN_BODY_RATE_WINDOW_SEC',
        env['FERRY_MIN_BODY_RATE_WINDOW_SEC'],
        DEFAULTS.http.minBodyRateWindowSec,
        0,
        86_400,
      ),
      publicUrl: publicUrlFrom(env['FERRY_PUBLIC_URL']),
      drainDelayMs: intFrom(
        'FERRY_DRAIN_DELAY_MS',
        env['FERRY_DRAIN_DELAY_MS'],
        DEFAULTS.http.drainDelayMs,
        0,
        600_000,
      ),
      metricsToken: env['FERRY_METRICS_TOKEN'] || null,
    },
    storage: {
      dataDir: resolve(flags['data-dir'] ?? env['FERRY_DATA_DIR'] ?? DEFAULTS.storage.dataDir),
      fsync: oneOf('FERRY_FSYNC', env['FERRY_FSYNC'], DEFAULTS.storage.fsync, [
        'commit',
        'chunk',
        'none',
      ]),
      readyMinFreeBytes: minFreeBytesFrom(env),
      ...storageBackendFrom(env),
    },
    redis: { url: redisUrl === undefined || redisUrl === '' ? null : redisUrl, prefix },
    pool: {
      workers: intFrom(
        flags.workers !== undefined ? '--workers' : 'FERRY_WORKERS',
        flags.workers ?? env['FERRY_WORKERS'],
        DEFAULTS.pool.workers,
        1,
        64,
      ),
      streamsPerThread: intFrom(
        'FERRY_POOL_STREAMS_PER_THREAD',
        env['FERRY_POOL_STREAMS_PER_THREAD'],
        DEFAULTS.pool.streamsPerThread,
        1,
        1024,
      ),
      streamIdleMs: intFrom(
        'FERRY_POOL_STREAM_IDLE_MS',
        env['FERRY_POOL_STREAM_IDLE_MS'],
        DEFAULTS.pool.streamIdleMs,
        100,
      ),
    },
    sessions: {
      ttlSec: intFrom(
        'FERRY_SESSION_TTL_SEC',
        env['FERRY_SESSION_TTL_SEC'],
        DEFAULTS.sessions.ttlSec,
        1,
      ),
      sweepIntervalSec: intFrom(
        'FERRY_SWEEP_INTERVAL_SEC',
        env['FERRY_SWEEP_INTERVAL_SEC'],
        DEFAULTS.sessions.sweepIntervalSec,
        1,
      ),
      reserveLeaseMs: intFrom(
        'FERRY_RESERVE_LEASE_MS',
        env['FERRY_RESERVE_LEASE_MS'],
        DEFAULTS.sessions.reserveLeaseMs,
        1000,
      ),
      commitLeaseMs: intFrom(
        'FERRY_COMMIT_LEASE_MS',
        env['FERRY_COMMIT_LEASE_MS'],
        DEFAULTS.sessions.commitLeaseMs,
        1000,
      ),
      maxSessions: intFrom(
        'FERRY_MAX_SESSIONS',
        env['FERRY_MAX_SESSIONS'],
        DEFAULTS.sessions.maxSessions,
        0,
      ),
      maxRangesPerSession: intFrom(
        'FERRY_MAX_RANGES_PER_SESSION',
        env['FERRY_MAX_RANGES_PER_SESSION'],
        DEFAULTS.sessions.maxRangesPerSession,
        1,
      ),
      maxChunksPerSession: intFrom(
        'FERRY_MAX_CHUNKS_PER_SESSION',
        env['FERRY_MAX_CHUNKS_PER_SESSION'],
        DEFAULTS.sessions.maxChunksPerSession,
        1,
      ),
      minChunkBytes: intFrom(
        'FERRY_MIN_CHUNK_BYTES',
        env['FERRY_MIN_CHUNK_BYTES'],
        DEFAULTS.sessions.minChunkBytes,
        0,
      ),
    },
    cluster: {
      livenessMs: intFrom(
        'FERRY_LIVENESS_MS',
        env['FERRY_LIVENESS_MS'],
        DEFAULTS.cluster.livenessMs,
        300,
      ),
      redisTimeoutMs: intFrom(
        'FERRY_REDIS_TIMEOUT_MS',
        env['FERRY_REDIS_TIMEOUT_MS'],
        DEFAULTS.cluster.redisTimeoutMs,
        100,
      ),
    },
    limits: {
      maxUploadBytes: intFrom(
        'FERRY_MAX_UPLOAD_BYTES',
        env['FERRY_MAX_UPLOAD_BYTES'],
        DEFAULTS.limits.maxUploadBytes,
        0,
      ),
      maxJsonBytes: intFrom(
        'FERRY_MAX_JSON_BYTES',
        env['FERRY_MAX_JSON_BYTES'],
        DEFAULTS.limits.maxJsonBytes,
        1024,
      ),
    },
    locks: {
      ttlMs: intFrom('FERRY_LOCK_TTL_MS', env['FERRY_LOCK_TTL_MS'], DEFAULTS.locks.ttlMs, 300),
    },
    imagestore: {
      enabled: on('imagestore', true, file.imagestore?.enabled ?? true),
      auth: file.imagestore?.auth ?? null,
      listPageSize: intFrom(
        'FERRY_IMAGESTORE_LIST_PAGE_SIZE',
        env['FERRY_IMAGESTORE_LIST_PAGE_SIZE'],
        DEFAULTS.imagestore.listPageSize,
        1,
        100_000,
      ),
    },
    shaman: {
      enabled: on('shaman', true, file.shaman?.enabled ?? true),
      auth: file.shaman?.auth ?? null,
      gcMaxAgeSec: intFrom(
        'FERRY_SHAMAN_GC_MAX_AGE_SEC',
        env['FERRY_SHAMAN_GC_MAX_AGE_SEC'],
        DEFAULTS.shaman.gcMaxAgeSec,
        1,
      ),
      gcIntervalSec: intFrom(
        'FERRY_SHAMAN_GC_INTERVAL_SEC',
        env['FERRY_SHAMAN_GC_INTERVAL_SEC'],
        DEFAULTS.shaman.gcIntervalSec,
        0,
      ),
      fileListThreads: intFrom(
        'FERRY_SHAMAN_FILE_LIST_THREADS',
        env['FERRY_SHAMAN_FILE_LIST_THREADS'],
        DEFAULTS.shaman.fileListThreads,
        1,
        64,
      ),
    },
    tus: {
      enabled: on('tus', true),
      path: tusPathFrom(env['FERRY_TUS_PATH']),
      maxSizeBytes: intFrom(
        'FERRY_TUS_MAX_SIZE',
        env['FERRY_TUS_MAX_SIZE'],
        DEFAULTS.tus.maxSizeBytes,
        0,
      ),
      retentionSec: intFrom(
        'FERRY_TUS_RETENTION_SEC',
        env['FERRY_TUS_RETENTION_SEC'],
        DEFAULTS.tus.retentionSec,
        0,
      ),
    },
    cors: corsFrom(env['FERRY_CORS_ORIGINS']),
    // Its own reading of FERRY_FAMILIES and FERRY_TUS_PATH: the page needs the tus endpoint.
    ui: uiFrom(env, on('tus', true), tusPathFrom(env['FERRY_TUS_PATH'])),
    hooks: { url: hookUrlFrom(env['FERRY_HOOK_URL']) },
    lakefs: on('lakefs', file.lakefs !== null) ? file.lakefs : null,
    ingest: on('ingest', file.ingest !== null) ? file.ingest : null,
    logLevel: oneOf('FERRY_LOG_LEVEL', env['FERRY_LOG_LEVEL'], DEFAULTS.logLevel, [
      'fatal',
      'error',
      'warn',
      'info',
      'debug',
      'trace',
      'silent',
    ]),
  }
  return deepFreeze(config)
}

export function deepFreeze<T>(obj: T): T {
  if (obj !== null && typeof obj === 'object' && !Object.isFrozen(obj)) {
    Object.freeze(obj)
    for (const v of Object.values(obj)) deepFreeze(v)
  }
  return obj
}
