import { readFileSync } from 'node:fs'
import { resolve } from 'node:path'
import { availableParallelism } from 'node:os'
import { parseArgs } from 'node:util'
import { maskUrl } from '../observability/redact.js'

export type FsyncPolicy = 'commit' | 'chunk'
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
  readonly credentials: readonly { readonly accessKeyId: string; readonly secretAccessKey: string }[]
  readonly repositories: readonly LakeFsRepository[]
  /** Accept link requests for addresses Ferry did not sign (outside the namespace). Default false. */
  readonly allowExternalAddresses: boolean
  /** Lifetime of a presigned upload URL, seconds. Default 900. */
  readonly presignTtlSec: number
}

export interface IngestConfig {
  /** Bearer JWT checks: HS256 with `secret`; `iss` must equal `issuer`, `aud` must contain `audience`. */
  readonly jwt: { readonly secret: string; readonly issuer: string; readonly audience: string }
  /** Files of one bulk ingest processed at once (dsp-ingest's INGEST_BULK_MAX_PARALLEL). Default 8. */
  readonly maxParallel: number
}

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
    /** A request body slower than this on average over the window is answered 408 and closed, bytes/s; 0 disables. */
    readonly minBodyRateBytesPerSec: number
    /** The window over which the body rate is averaged, s. */
    readonly minBodyRateWindowSec: number
    /**
     * Origin (optionally with a path prefix, no trailing slash) of every URL Ferry hands out, such
     * as lakeFS presigned URLs: `https://uploads.example.org`. Null: taken from the request's Host.
     */
    readonly publicUrl: string | null
  }
  readonly storage: {
    /** Root of tmp/, store/, cas/, checkouts/, staging/, ingest/, state/ (one filesystem). */
    readonly dataDir: string
    /** `commit`: fsync once at commit (default); `chunk`: fdatasync every chunk before it counts. */
    readonly fsync: FsyncPolicy
    /** `/readyz` reports not ready while the data directory's filesystem has less free space, bytes; 0 disables. */
    readonly readyMinFreeBytes: number
  }
  readonly redis: {
    /** `redis://…`; null selects the embedded store in `<dataDir>/state`. */
    readonly url: string | null
    /** Prefix of every key Ferry writes, so several deployments can share one Redis. */
    readonly prefix: string
  }
  readonly pool: {
    /** Worker threads for hashing and commit work. */
    readonly workers: number
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
    /** Sessions held at once (committed ones until they expire included); 503 beyond. 0: no bound. */
    readonly maxSessions: number
    /** Separate received ranges one session may hold; 400 beyond. */
    readonly maxRangesPerSession: number
    /** Chunks one session may receive; 400 beyond. */
    readonly maxChunksPerSession: number
    /** Smallest chunk accepted except the last one of a file, bytes. */
    readonly minChunkBytes: number
  }
  readonly cluster: {
    /** An instance that has not renewed its liveness key for this long is dead: its leases are broken, ms. */
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
  readonly shaman: {
    /** Blobs untouched for this long and used by no checkout are collected, s. */
    readonly gcMaxAgeSec: number
    /** Garbage collection period, s; 0 disables it. */
    readonly gcIntervalSec: number
  }
  readonly lakefs: LakeFsConfig | null
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
  },
  storage: { dataDir: './data', fsync: 'commit', readyMinFreeBytes: 64 * 1024 * 1024 },
  redis: { url: null, prefix: 'ferry:' },
  pool: { workers: Math.max(2, Math.min(4, availableParallelism())) },
  sessions: {
    ttlSec: 1800, sweepIntervalSec: 60, reserveLeaseMs: 15_000, commitLeaseMs: 30_000,
    maxSessions: 10_000, maxRangesPerSession: 256, maxChunksPerSession: 100_000, minChunkBytes: 64 * 1024,
  },
  cluster: { livenessMs: 3000, redisTimeoutMs: 2000 },
  limits: { maxUploadBytes: 64 * GIB, maxJsonBytes: 8 * 1024 * 1024 },
  locks: { ttlMs: 30_000 },
  shaman: { gcMaxAgeSec: 31 * 24 * 3600, gcIntervalSec: 24 * 3600 },
  lakefs: null,
  ingest: null,
  logLevel: 'info',
} satisfies Config)

export class ConfigError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'ConfigError'
  }
}

type Env = Readonly<Record<string, string | undefined>>

function intFrom(key: string, raw: string | undefined, def: number, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (raw === undefined || raw === '') return def
  if (!/^\d+$/.test(raw.trim())) throw new ConfigError(`${key} must be a whole number, got "${raw}"`)
  const n = Number(raw.trim())
  if (!Number.isSafeInteger(n) || n < min || n > max) {
    throw new ConfigError(`${key} must be between ${min} and ${max}, got ${raw}`)
  }
  return n
}

function oneOf<T extends string>(key: string, raw: string | undefined, def: T, allowed: readonly T[]): T {
  if (raw === undefined || raw === '') return def
  if (!(allowed as readonly string[]).includes(raw)) {
    throw new ConfigError(`${key} must be one of ${allowed.join(', ')}, got "${raw}"`)
  }
  return raw as T
}

/** FERRY_PUBLIC_URL: an absolute http(s) URL without query, fragment or userinfo; the trailing slash dropped. */
function publicUrlFrom(raw: string | undefined): string | null {
  if (raw === undefined || raw === '') return null
  let u: URL
  try {
    u = new URL(raw)
  } catch {
    throw new ConfigError(`FERRY_PUBLIC_URL must be an absolute http:// or https:// URL, got "${maskUrl(raw)}"`)
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new ConfigError(`FERRY_PUBLIC_URL must use http:// or https://, got "${u.protocol}"`)
  if (u.search !== '' || raw.includes('?')) throw new ConfigError('FERRY_PUBLIC_URL must not have a query string')
  if (u.hash !== '' || raw.includes('#')) throw new ConfigError('FERRY_PUBLIC_URL must not have a fragment')
  if (u.username !== '' || u.password !== '') throw new ConfigError('FERRY_PUBLIC_URL must not carry a user name or password')
  return `${u.origin}${u.pathname.replace(/\/+$/, '')}`
}

function nonEmpty(key: string, raw: unknown): string {
  if (typeof raw !== 'string' || raw.length === 0) throw new ConfigError(`${key} must be a non-empty string`)
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
    'signingSecret', 'jwtSecret', 'credentials', 'repositories', 'allowExternalAddresses', 'presignTtlSec',
  ])
  const creds = o['credentials'] ?? []
  if (!Array.isArray(creds)) throw new ConfigError('FERRY_CONFIG.lakefs.credentials must be an array')
  const repos = o['repositories'] ?? []
  if (!Array.isArray(repos)) throw new ConfigError('FERRY_CONFIG.lakefs.repositories must be an array')
  const presign = o['presignTtlSec'] ?? 900
  if (typeof presign !== 'number' || !Number.isSafeInteger(presign) || presign < 1) {
    throw new ConfigError('FERRY_CONFIG.lakefs.presignTtlSec must be a positive whole number')
  }
  const allowExt = o['allowExternalAddresses'] ?? false
  if (typeof allowExt !== 'boolean') throw new ConfigError('FERRY_CONFIG.lakefs.allowExternalAddresses must be a boolean')
  const out: LakeFsConfig = {
    signingSecret: nonEmpty('FERRY_CONFIG.lakefs.signingSecret', o['signingSecret']),
    jwtSecret: nonEmpty('FERRY_CONFIG.lakefs.jwtSecret', o['jwtSecret']),
    credentials: creds.map((c, i) => {
      const k = `FERRY_CONFIG.lakefs.credentials[${i}]`
      const co = onlyKeys(k, c, ['accessKeyId', 'secretAccessKey'])
      return {
        accessKeyId: nonEmpty(`${k}.accessKeyId`, co['accessKeyId']),
        secretAccessKey: nonEmpty(`${k}.secretAccessKey`, co['secretAccessKey']),
      }
    }),
    repositories: repos.map((r, i) => {
      const k = `FERRY_CONFIG.lakefs.repositories[${i}]`
      const ro = onlyKeys(k, r, ['name', 'storageNamespace', 'branches'])
      const branches = ro['branches']
      if (!Array.isArray(branches) || branches.length === 0) throw new ConfigError(`${k}.branches must be a non-empty array`)
      // lakeFS's own name rules; names also become folders under <dataDir>/staging.
      const name = nonEmpty(`${k}.name`, ro['name'])
      if (!/^[a-z0-9][a-z0-9-]{2,62}$/.test(name)) throw new ConfigError(`${k}.name must match ^[a-z0-9][a-z0-9-]{2,62}$ (lakeFS repository id)`)
      const ns = nonEmpty(`${k}.storageNamespace`, ro['storageNamespace'])
      if (!/^[a-z][a-z0-9+.-]*:\/\/[^\s,?#]+$/i.test(ns)) throw new ConfigError(`${k}.storageNamespace must be a URI such as local://${name}`)
      return {
        name,
        storageNamespace: ns,
        branches: branches.map((b, j) => {
          const branch = nonEmpty(`${k}.branches[${j}]`, b)
          if (!/^\w[-\w]*$/.test(branch) || branch.length > 255) throw new ConfigError(`${k}.branches[${j}] must match ^\\w[-\\w]*$ (lakeFS branch id)`)
          return branch
        }),
      }
    }),
    allowExternalAddresses: allowExt,
    presignTtlSec: presign,
  }
  const names = new Set<string>()
  for (const r of out.repositories) {
    if (names.has(r.name)) throw new ConfigError(`FERRY_CONFIG.lakefs.repositories: "${r.name}" is listed twice`)
    names.add(r.name)
  }
  return out
}

function parseIngest(raw: unknown): IngestConfig {
  const o = onlyKeys('FERRY_CONFIG.ingest', raw, ['jwt', 'maxParallel'])
  const j = onlyKeys('FERRY_CONFIG.ingest.jwt', o['jwt'], ['secret', 'issuer', 'audience'])
  const maxParallel = o['maxParallel'] ?? 8
  if (typeof maxParallel !== 'number' || !Number.isSafeInteger(maxParallel) || maxParallel < 1 || maxParallel > 64) {
    throw new ConfigError('FERRY_CONFIG.ingest.maxParallel must be a whole number from 1 to 64')
  }
  return {
    jwt: {
      secret: nonEmpty('FERRY_CONFIG.ingest.jwt.secret', j['secret']),
      issuer: nonEmpty('FERRY_CONFIG.ingest.jwt.issuer', j['issuer']),
      audience: nonEmpty('FERRY_CONFIG.ingest.jwt.audience', j['audience']),
    },
    maxParallel,
  }
}

function readConfigFile(path: string): { lakefs: LakeFsConfig | null; ingest: IngestConfig | null } {
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
  const o = onlyKeys('FERRY_CONFIG', doc, ['lakefs', 'ingest'])
  return {
    lakefs: o['lakefs'] === undefined ? null : parseLakeFs(o['lakefs']),
    ingest: o['ingest'] === undefined ? null : parseIngest(o['ingest']),
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
  if (redisUrl !== undefined && redisUrl !== '' && !/^rediss?:\/\//.test(redisUrl)) {
    throw new ConfigError(`REDIS_URL must start with redis:// or rediss://, got "${maskUrl(redisUrl)}"`)
  }
  const prefix = env['FERRY_REDIS_PREFIX'] ?? DEFAULTS.redis.prefix
  if (!/^[A-Za-z0-9:_.{}-]{1,64}$/.test(prefix)) {
    throw new ConfigError('FERRY_REDIS_PREFIX must be 1-64 characters of letters, digits and :_.{}-')
  }
  const file = env['FERRY_CONFIG'] ? readConfigFile(env['FERRY_CONFIG']) : { lakefs: null, ingest: null }
  const config: Config = {
    http: {
      host,
      port: intFrom(flags.port !== undefined ? '--port' : 'FERRY_PORT', flags.port ?? env['FERRY_PORT'], DEFAULTS.http.port, 0, 65535),
      requestTimeoutMs: intFrom('FERRY_REQUEST_TIMEOUT_MS', env['FERRY_REQUEST_TIMEOUT_MS'], DEFAULTS.http.requestTimeoutMs, 0),
      idleTimeoutMs: intFrom('FERRY_IDLE_TIMEOUT_MS', env['FERRY_IDLE_TIMEOUT_MS'], DEFAULTS.http.idleTimeoutMs, 100),
      shutdownTimeoutMs: intFrom('FERRY_SHUTDOWN_TIMEOUT_MS', env['FERRY_SHUTDOWN_TIMEOUT_MS'], DEFAULTS.http.shutdownTimeoutMs, 0),
      minBodyRateBytesPerSec: intFrom('FERRY_MIN_BODY_RATE_BYTES_PER_SEC', env['FERRY_MIN_BODY_RATE_BYTES_PER_SEC'], DEFAULTS.http.minBodyRateBytesPerSec, 0),
      minBodyRateWindowSec: intFrom('FERRY_MIN_BODY_RATE_WINDOW_SEC', env['FERRY_MIN_BODY_RATE_WINDOW_SEC'], DEFAULTS.http.minBodyRateWindowSec, 0, 86_400),
      publicUrl: publicUrlFrom(env['FERRY_PUBLIC_URL']),
    },
    storage: {
      dataDir: resolve(flags['data-dir'] ?? env['FERRY_DATA_DIR'] ?? DEFAULTS.storage.dataDir),
      fsync: oneOf('FERRY_FSYNC', env['FERRY_FSYNC'], DEFAULTS.storage.fsync, ['commit', 'chunk']),
      readyMinFreeBytes: intFrom('FERRY_READY_MIN_FREE_BYTES', env['FERRY_READY_MIN_FREE_BYTES'], DEFAULTS.storage.readyMinFreeBytes, 0),
    },
    redis: { url: redisUrl === undefined || redisUrl === '' ? null : redisUrl, prefix },
    pool: {
      workers: intFrom(flags.workers !== undefined ? '--workers' : 'FERRY_WORKERS', flags.workers ?? env['FERRY_WORKERS'], DEFAULTS.pool.workers, 1, 64),
    },
    sessions: {
      ttlSec: intFrom('FERRY_SESSION_TTL_SEC', env['FERRY_SESSION_TTL_SEC'], DEFAULTS.sessions.ttlSec, 1),
      sweepIntervalSec: intFrom('FERRY_SWEEP_INTERVAL_SEC', env['FERRY_SWEEP_INTERVAL_SEC'], DEFAULTS.sessions.sweepIntervalSec, 1),
      reserveLeaseMs: intFrom('FERRY_RESERVE_LEASE_MS', env['FERRY_RESERVE_LEASE_MS'], DEFAULTS.sessions.reserveLeaseMs, 1000),
      commitLeaseMs: intFrom('FERRY_COMMIT_LEASE_MS', env['FERRY_COMMIT_LEASE_MS'], DEFAULTS.sessions.commitLeaseMs, 1000),
      maxSessions: intFrom('FERRY_MAX_SESSIONS', env['FERRY_MAX_SESSIONS'], DEFAULTS.sessions.maxSessions, 0),
      maxRangesPerSession: intFrom('FERRY_MAX_RANGES_PER_SESSION', env['FERRY_MAX_RANGES_PER_SESSION'], DEFAULTS.sessions.maxRangesPerSession, 1),
      maxChunksPerSession: intFrom('FERRY_MAX_CHUNKS_PER_SESSION', env['FERRY_MAX_CHUNKS_PER_SESSION'], DEFAULTS.sessions.maxChunksPerSession, 1),
      minChunkBytes: intFrom('FERRY_MIN_CHUNK_BYTES', env['FERRY_MIN_CHUNK_BYTES'], DEFAULTS.sessions.minChunkBytes, 0),
    },
    cluster: {
      livenessMs: intFrom('FERRY_LIVENESS_MS', env['FERRY_LIVENESS_MS'], DEFAULTS.cluster.livenessMs, 300),
      redisTimeoutMs: intFrom('FERRY_REDIS_TIMEOUT_MS', env['FERRY_REDIS_TIMEOUT_MS'], DEFAULTS.cluster.redisTimeoutMs, 100),
    },
    limits: {
      maxUploadBytes: intFrom('FERRY_MAX_UPLOAD_BYTES', env['FERRY_MAX_UPLOAD_BYTES'], DEFAULTS.limits.maxUploadBytes, 0),
      maxJsonBytes: intFrom('FERRY_MAX_JSON_BYTES', env['FERRY_MAX_JSON_BYTES'], DEFAULTS.limits.maxJsonBytes, 1024),
    },
    locks: { ttlMs: intFrom('FERRY_LOCK_TTL_MS', env['FERRY_LOCK_TTL_MS'], DEFAULTS.locks.ttlMs, 300) },
    shaman: {
      gcMaxAgeSec: intFrom('FERRY_SHAMAN_GC_MAX_AGE_SEC', env['FERRY_SHAMAN_GC_MAX_AGE_SEC'], DEFAULTS.shaman.gcMaxAgeSec, 1),
      gcIntervalSec: intFrom('FERRY_SHAMAN_GC_INTERVAL_SEC', env['FERRY_SHAMAN_GC_INTERVAL_SEC'], DEFAULTS.shaman.gcIntervalSec, 0),
    },
    lakefs: file.lakefs,
    ingest: file.ingest,
    logLevel: oneOf('FERRY_LOG_LEVEL', env['FERRY_LOG_LEVEL'], DEFAULTS.logLevel, [
      'fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent',
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
