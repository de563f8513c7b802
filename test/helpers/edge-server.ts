/**
 * Ferry in this process, built by the composition root, with what edge tests need on top: a
 * logger the test reads, extra readiness checks, and the drain switch.
 */
import { Writable } from 'node:stream'
import { pino, type Logger } from 'pino'
import { createApp, type App } from '../../src/app.js'
import { loadConfig, type Config } from '../../src/config/config.js'
import type { ReadyCheck } from '../../src/http/server.js'
import type { Server } from 'node:http'
import { LOG_REDACT_PATHS } from '../../src/observability/logger.js'
import { TEST_DEFAULTS, tempDir } from './server.js'

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
      for (const l of s.split('\n'))
        if (l.trim() !== '') lines.push(JSON.parse(l) as Record<string, unknown>)
      done()
    },
  })
  const logger = pino(
    {
      name: 'ferry',
      level,
      base: { pid: process.pid },
      redact: { paths: [...LOG_REDACT_PATHS], censor: '[REDACTED]' },
    },
    sink,
  )
  return { logger, lines, text: () => raw.join('') }
}

export async function startEdge(
  env: Record<string, string> = {},
  opts: { log?: Logger; readyChecks?: ReadyCheck[] } = {},
): Promise<EdgeServer> {
  const dataDir = env['FERRY_DATA_DIR'] ?? tempDir('ferry-edge-')
  const config = loadConfig({
    FERRY_PORT: '0',
    FERRY_LOG_LEVEL: 'silent',
    ...TEST_DEFAULTS,
    ...env,
    FERRY_DATA_DIR: dataDir,
  })
  const app = await createApp(
    config,
    opts.log ?? pino({ level: 'silent' }),
    opts.readyChecks ? { readyChecks: opts.readyChecks } : {},
  )
  const addr = await app.listen()
  return {
    url: `http://127.0.0.1:${addr.port}`,
    config,
    app,
    server: app.server,
    dataDir,
    setReady: (r) => app.setReady(r),
    close: () => app.close(),
  }
}
