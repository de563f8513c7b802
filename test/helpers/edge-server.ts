/**
 * Ferry in this process with the HTTP edge's own options (minimum body rate, readiness checks and
 * disk threshold, a logger the test reads). Until the composition root (src/app.ts) passes
 * `edgeOptionsFrom(config)` and `readyChecks` to `createHttpServer`, this helper does: it builds
 * the app for its engine, mounts the same four families on a server made with those options, and
 * listens on a free port.
 */
import type { Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { Writable } from 'node:stream'
import { pino, type Logger } from 'pino'
import { createApp, type App } from '../../src/app.js'
import { loadConfig, type Config } from '../../src/config/config.js'
import type { Family } from '../../src/http/context.js'
import { createImageStoreFamily } from '../../src/http/imagestore/family.js'
import { createIngestFamily } from '../../src/http/ingest/family.js'
import { createHttpServer, edgeOptionsFrom, type ReadyCheck } from '../../src/http/server.js'
import { createShamanFamily } from '../../src/http/shaman/family.js'
import { createStagingFamily } from '../../src/http/staging/family.js'
import { LOG_REDACT_PATHS } from '../../src/observability/logger.js'
import { tempDir } from './server.js'

export interface EdgeServer {
  readonly url: string
  readonly config: Config
  readonly app: App
  readonly server: Server
  readonly dataDir: string
  /** What the composition root's `ready` flag says (false: starting or draining). */
  setReady(ready: boolean): void
  close(): Promise<void>
}

/** Log lines captured from a logger, as the JSON objects pino wrote, and as raw text. */
export interface CapturedLog {
  readonly logger: Logger
  readonly lines: Record<string, unknown>[]
  text(): string
}

/** A pino logger (Ferry's options: redaction included) writing into memory. */
export function captureLog(level = 'debug'): CapturedLog {
  const raw: string[] = []
  const lines: Record<string, unknown>[] = []
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      const s = chunk.toString()
      raw.push(s)
      for (const l of s.split('\n')) if (l.trim() !== '') lines.push(JSON.parse(l) as Record<string, unknown>)
      done()
    },
  })
  const logger = pino({ name: 'ferry', level, base: { pid: process.pid }, redact: { paths: [...LOG_REDACT_PATHS], censor: '[REDACTED]' } }, sink)
  return { logger, lines, text: () => raw.join('') }
}

export async function startEdge(env: Record<string, string> = {}, opts: { log?: Logger; readyChecks?: ReadyCheck[] } = {}): Promise<EdgeServer> {
  const dataDir = env['FERRY_DATA_DIR'] ?? tempDir('ferry-edge-')
  const config = loadConfig({ FERRY_PORT: '0', FERRY_LOG_LEVEL: 'silent', ...env, FERRY_DATA_DIR: dataDir })
  const log = opts.log ?? pino({ level: 'silent' })
  const app = await createApp(config, log)
  const { engine } = app
  const families: Family[] = [
    createImageStoreFamily({ uploads: engine.uploads, maxUploadBytes: config.limits.maxUploadBytes, maxJsonBytes: config.limits.maxJsonBytes }),
    ...(config.ingest ? [createIngestFamily(engine, config.ingest)] : []),
    ...(config.lakefs ? [createStagingFamily(engine, config.lakefs)] : []),
    createShamanFamily(engine),
  ]
  let ready = true
  const server = createHttpServer({
    families,
    log,
    requestTimeoutMs: config.http.requestTimeoutMs,
    idleTimeoutMs: config.http.idleTimeoutMs,
    ready: () => ready,
    ...edgeOptionsFrom(config),
    ...(opts.readyChecks ? { readyChecks: opts.readyChecks } : {}),
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()))
  const port = (server.address() as AddressInfo).port
  return {
    url: `http://127.0.0.1:${port}`,
    config,
    app,
    server,
    dataDir,
    setReady: (r) => {
      ready = r
    },
    async close() {
      ready = false
      server.closeAllConnections()
      await new Promise<void>((resolve) => server.close(() => resolve()))
      for (const f of families) await f.close?.()
      await app.close()
    },
  }
}
