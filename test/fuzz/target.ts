/**
 * The Ferry a fuzz run attacks: dist/src/main.js forked as its own process (so a crash shows as an
 * exit, not as a failed test), with all four families on, and the credentials a client needs to
 * get past authentication (minted once, then mixed into fuzzed requests).
 *
 *   <sentinel>/            created for the run; must hold nothing but data/ at any time
 *   <sentinel>/data/       FERRY_DATA_DIR; its top level may hold only the layout's folders
 *   <config dir>/ferry.json
 */
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { nowSeconds, signJwt } from '../helpers/jwt.js'
import { sendRaw } from '../helpers/raw-http.js'
import { freePort } from '../helpers/redis.js'
import { removeDir, spawnFerry, tempDir, type ChildServer } from '../helpers/server.js'
import { basicAuth } from '../helpers/staging.js'

export const LAKEFS_SIGNING = 'fuzz-signing-secret'
export const LAKEFS_JWT_SECRET = 'fuzz-lakefs-jwt-secret'
export const LAKEFS_KEY = { accessKeyId: 'AKIAFUZZ', secretAccessKey: 'fuzz-secret-key' }
export const INGEST_SECRET = 'fuzz-ingest-secret-0123456789abcdef'
export const INGEST_ISSUER = 'fuzz-issuer'
export const INGEST_AUDIENCE = 'http://fuzz-audience'
/** Uploads above this are refused: big enough for every shape, small enough to go over quickly. */
export const FUZZ_MAX_UPLOAD_BYTES = 1024 * 1024
/** JSON bodies above this are refused (the fuzzer's "huge" JSON goes over it). */
export const FUZZ_MAX_JSON_BYTES = 256 * 1024
/** What the data directory's top level may hold (src/core/storage/layout.ts). */
export const LAYOUT_DIRS = new Set([
  'tmp',
  'store',
  'cas',
  'checkouts',
  'staging',
  'ingest',
  'tus',
  'state',
])

/** Top-level names the generator's paths use (generators.ts SANE_SEGMENTS and fixed paths). */
const CANARY_NAMES = [
  'a.bin',
  'dir',
  'x',
  'file.txt',
  'sub',
  'data.tif',
  'b',
  'fuzz',
  'repo1',
  'repo2',
  '0ABC',
  'checkouts',
  'store',
]

/** Credentials and addresses the generators draw from; filled by `FuzzTarget.start`. */
export interface Credentials {
  /** `Authorization` values lakeFS accepts. */
  readonly lakefsValid: readonly string[]
  /** lakeFS tokens that must fail (expired, wrong key, wrong audience, no exp). */
  readonly lakefsInvalid: readonly string[]
  /** Bulk-ingest bearer tokens that pass (admin; write:project:0ABC). */
  readonly ingestValid: readonly string[]
  /** Bulk-ingest tokens that must fail (expired, wrong key, wrong issuer, bad scope, alg none). */
  readonly ingestInvalid: readonly string[]
  /** Presigned PUT targets (path + query) handed out by the server, for repo1/main. */
  readonly presigned: readonly string[]
  /** Physical addresses handed out with them (for link requests). */
  readonly physical: readonly string[]
}

async function hs(
  secret: string,
  claims: Record<string, unknown>,
  o: { iss?: string; aud?: string | string[]; expIn?: number | null; alg?: string } = {},
): Promise<string> {
  const now = nowSeconds()
  // Long enough for a run of many hours.
  const exp = o.expIn === null ? null : now + (o.expIn ?? 7 * 24 * 3600)
  return signJwt(claims, { secret, alg: o.alg, iss: o.iss, aud: o.aud, iat: now - 60, exp })
}

const b64url = (s: string) => Buffer.from(s).toString('base64url')

async function mintCredentials(): Promise<Omit<Credentials, 'presigned' | 'physical'>> {
  const ing = (
    claims: Record<string, unknown>,
    o: Parameters<typeof hs>[2] = {},
    secret = INGEST_SECRET,
  ) => hs(secret, { sub: 'fuzzer', ...claims }, { iss: INGEST_ISSUER, aud: INGEST_AUDIENCE, ...o })
  const lake = (
    claims: Record<string, unknown>,
    o: Parameters<typeof hs>[2] = {},
    secret = LAKEFS_JWT_SECRET,
  ) => hs(secret, { sub: 'fuzzer', ...claims }, o)
  return {
    lakefsValid: [
      basicAuth(LAKEFS_KEY.accessKeyId, LAKEFS_KEY.secretAccessKey),
      `Bearer ${await lake({})}`,
      `Bearer ${await lake({}, { aud: 'login', alg: 'HS512' })}`,
    ],
    lakefsInvalid: [
      `Bearer ${await lake({}, { expIn: -3600 })}`,
      `Bearer ${await lake({}, {}, 'another-secret')}`,
      `Bearer ${await lake({}, { aud: 'elsewhere' })}`,
      `Bearer ${await lake({}, { expIn: null })}`,
      `Bearer ${await lake({ sub: '' })}`,
      basicAuth(LAKEFS_KEY.accessKeyId, 'wrong'),
      `Basic ${Buffer.from(':').toString('base64')}`,
      `Bearer ${b64url('{"alg":"none"}')}.${b64url('{"sub":"x","exp":9999999999}')}.`,
    ],
    ingestValid: [
      `Bearer ${await ing({ scope: 'admin' })}`,
      `Bearer ${await ing({ scope: 'write:project:0ABC read:project:0ABC' })}`,
    ],
    ingestInvalid: [
      `Bearer ${await ing({ scope: 'admin' }, { expIn: -3600 })}`,
      `Bearer ${await ing({ scope: 'admin' }, {}, 'another-secret')}`,
      `Bearer ${await ing({ scope: 'admin' }, { iss: 'elsewhere' })}`,
      `Bearer ${await ing({ scope: 'admin' }, { aud: ['x', 'y'] })}`,
      `Bearer ${await ing({ scope: 'write:project:12345' })}`,
      `Bearer ${await ing({ scope: ['admin'] })}`,
      `Bearer ${await ing({ scope: 'read:project:0ABC' })}`,
      `Bearer ${await ing({ scope: 'admin' }, { alg: 'HS512' })}`,
      `Bearer ${b64url('{"alg":"none"}')}.${b64url(`{"sub":"x","scope":"admin","iss":"${INGEST_ISSUER}","aud":"${INGEST_AUDIENCE}"}`)}.`,
    ],
  }
}

/** Top-level names under `dir` that should not be there. */
function strangers(dir: string, allowed: ReadonlySet<string>): string[] {
  return readdirSync(dir).filter((n) => !allowed.has(n))
}

export interface TargetOptions {
  /** Extra FERRY_* settings (REDIS_URL and FERRY_REDIS_PREFIX to run on Redis). */
  readonly env?: Record<string, string>
}

export class FuzzTarget {
  readonly #env: Record<string, string>
  readonly #sentinel: string
  readonly #cfgDir: string
  readonly dataDir: string
  #server: ChildServer | null = null
  #port = 0
  #creds: Credentials | null = null
  /** Processes that ended on their own (each a crash). */
  readonly deaths: { code: number | string; output: string }[] = []
  restarts = 0
  /** Paths outside the sentinel the generator's names could land on, absent at the start. */
  readonly #canaries: string[]

  private constructor(env: Record<string, string>) {
    this.#env = env
    this.#sentinel = tempDir('ferry-fuzz-')
    this.#cfgDir = tempDir('ferry-fuzz-cfg-')
    this.dataDir = join(this.#sentinel, 'data')
    mkdirSync(this.dataDir)
    const config = {
      lakefs: {
        signingSecret: LAKEFS_SIGNING,
        jwtSecret: LAKEFS_JWT_SECRET,
        credentials: [LAKEFS_KEY],
        repositories: [
          { name: 'repo1', storageNamespace: 'local://repo1', branches: ['main', 'dev'] },
          { name: 'repo2', storageNamespace: 'local://bucket/repo2/', branches: ['main'] },
        ],
      },
      ingest: { jwt: { secret: INGEST_SECRET, issuer: INGEST_ISSUER, audience: INGEST_AUDIENCE } },
    }
    writeFileSync(join(this.#cfgDir, 'ferry.json'), JSON.stringify(config))
    this.#canaries = [tmpdir(), '/']
      .flatMap((d) => CANARY_NAMES.map((n) => join(d, n)))
      .filter((p) => !existsSync(p))
  }

  static async start(opts: TargetOptions = {}): Promise<FuzzTarget> {
    const t = new FuzzTarget(opts.env ?? {})
    await t.#launch()
    const base = await mintCredentials()
    const { presigned, physical } = await t.#stage(base.lakefsValid[0]!)
    t.#creds = { ...base, presigned, physical }
    return t
  }

  get port(): number {
    return this.#port
  }

  get pid(): number {
    return this.#server?.proc.pid ?? 0
  }

  get creds(): Credentials {
    if (this.#creds === null) throw new Error('target not started')
    return this.#creds
  }

  /**
   * The server's output so far (its logs at FERRY_LOG_LEVEL, and anything Node prints on a crash).
   */
  output(): string {
    return this.#server?.output() ?? ''
  }

  async #launch(): Promise<void> {
    this.#port = this.#port || (await freePort())
    this.#server = await spawnFerry(
      {
        FERRY_LOG_LEVEL: 'error',
        FERRY_DATA_DIR: this.dataDir,
        FERRY_CONFIG: join(this.#cfgDir, 'ferry.json'),
        FERRY_MAX_UPLOAD_BYTES: String(FUZZ_MAX_UPLOAD_BYTES),
        FERRY_MAX_JSON_BYTES: String(FUZZ_MAX_JSON_BYTES),
        FERRY_WORKERS: '2',
        ...this.#env,
      },
      this.#port,
      { execArgv: [] },
    )
  }

  /** Asks the server for presigned URLs and addresses, as lakectl would. */
  async #stage(auth: string): Promise<{ presigned: string[]; physical: string[] }> {
    const presigned: string[] = []
    const physical: string[] = []
    for (let i = 0; i < 6; i++) {
      const r = await fetch(
        `http://127.0.0.1:${this.#port}/api/v1/repositories/repo1/branches/main/staging/backing?path=fuzz/o${i}&presign=true`,
        {
          headers: { Authorization: auth },
        },
      )
      if (r.status !== 200)
        throw new Error(`could not get a presigned URL: ${r.status} ${await r.text()}`)
      const loc = (await r.json()) as { physical_address: string; presigned_url: string }
      const u = new URL(loc.presigned_url)
      presigned.push(u.pathname + u.search)
      physical.push(loc.physical_address)
    }
    return { presigned, physical }
  }

  /** True while the process runs. */
  alive(): boolean {
    const p = this.#server?.proc
    return p !== undefined && p.exitCode === null && p.signalCode === null
  }

  /**
   * Confirms the process still answers: a crash that a request caused shows as a refused or cut
   * health check (and, within a moment, an exit).
   */
  async healthy(): Promise<boolean> {
    if (!this.alive()) return false
    // One connection per check, closed after the answer: a kept-alive probe would hold up a
    // graceful stop.
    const o = await sendRaw(
      this.#port,
      Buffer.from('GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n'),
      { ending: 'wait' },
    )
    if (o.status === 200) return true
    // Give a dying process a moment to be seen as dead.
    await Promise.race([this.#server!.exited, new Promise((r) => setTimeout(r, 1000))])
    return false
  }

  /** Notes a death (once) and starts a fresh process on the same port and data directory. */
  async ensureUp(): Promise<void> {
    if (this.alive()) return
    const s = this.#server!
    this.deaths.push({ code: await s.exited, output: s.output() })
    this.restarts++
    await this.#launch()
  }

  /** VmRSS of the server process, bytes (0 when it is gone). */
  rssBytes(): number {
    try {
      const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${this.pid}/status`, 'utf8'))
      return m ? Number(m[1]) * 1024 : 0
    } catch {
      return 0
    }
  }

  /**
   * Anything created outside the data directory or beside the layout's folders, by name; and, one
   * level further out, any of the names the generator writes that appeared in the temp directory
   * or at the file system root since the start.
   */
  escapes(): string[] {
    const out = strangers(this.#sentinel, new Set(['data'])).map((n) => join(this.#sentinel, n))
    out.push(...strangers(this.dataDir, LAYOUT_DIRS).map((n) => join(this.dataDir, n)))
    out.push(...this.#canaries.filter((p) => existsSync(p)))
    return out
  }

  /**
   * SIGTERM, then SIGKILL after `graceMs`. Answers how long the graceful stop took, or null when
   * it had to be killed (a connection the server never let go of holds up its drain).
   */
  async stop(graceMs = 3000): Promise<number | null> {
    const s = this.#server
    let took: number | null = 0
    if (s !== null && this.alive()) {
      const t0 = Date.now()
      let killed = false
      s.proc.kill('SIGTERM')
      const t = setTimeout(() => {
        killed = true
        s.proc.kill('SIGKILL')
      }, graceMs)
      await s.exited
      clearTimeout(t)
      took = killed ? null : Date.now() - t0
    }
    removeDir(this.#sentinel)
    removeDir(this.#cfgDir)
    return took
  }
}
