/**
 * Runs the server: load config, build the app, listen, shut down cleanly on SIGTERM/SIGINT. What
 * `npm start` (src/main.ts) and `ferry serve` both run.
 */
import { setFlagsFromString } from 'node:v8'
import { ConfigError, loadConfig, type Config } from '../config/config.js'
import { createApp, refuseUnsupportedStorage } from '../app.js'
import { parseRedisUrl } from '../core/state/redis-url.js'
import { createLogger } from '../observability/logger.js'
import { maskUrlsIn, scrubSecrets } from '../observability/redact.js'

/**
 * Secrets that must never be printed, from the environment and the loaded configuration: a
 * start-up error may quote any of them (ioredis and node errors quote the URL they were given).
 */
let knownSecrets: string[] = []

function secretsOf(config: Config | null, env: NodeJS.ProcessEnv): string[] {
  const out: string[] = []
  const redisUrl = config?.redis.url ?? env['REDIS_URL']
  if (redisUrl) {
    try {
      const t = parseRedisUrl(redisUrl)
      if (t.mode === 'single') {
        const u = new URL(redisUrl)
        if (u.password) out.push(u.password, decodeURIComponent(u.password))
      } else {
        if (t.password) out.push(t.password)
        if (t.mode === 'sentinel' && t.sentinelPassword) out.push(t.sentinelPassword)
      }
    } catch {
      /* not a URL: the pattern masking below still applies */
    }
  }
  if (config?.lakefs) {
    out.push(
      config.lakefs.signingSecret,
      config.lakefs.jwtSecret,
      ...config.lakefs.credentials.map((c) => c.secretAccessKey),
    )
  }
  if (config?.ingest) out.push(config.ingest.jwt.secret)
  const metricsToken = config?.http.metricsToken ?? env['FERRY_METRICS_TOKEN']
  if (metricsToken) out.push(metricsToken)
  // FERRY_STORAGE=s3: the AWS SDK reads these itself; a start-up error must not print them.
  for (const k of ['AWS_SECRET_ACCESS_KEY', 'AWS_SESSION_TOKEN']) if (env[k]) out.push(env[k])
  return out
}

/** What may be printed of an error at start-up: URL passwords masked, known secrets removed. */
function printable(text: string): string {
  return scrubSecrets(maskUrlsIn(text), knownSecrets)
}

/**
 * V8 counts the external memory allocated since the last full GC (here: socket read buffers,
 * 64 KiB each, alive for a millisecond or two) against the old generation's limit, which after a
 * full GC is only about 8 MiB above Ferry's ~9 MiB live heap. Request bodies cross that in a few
 * milliseconds, long before the young-generation collection that frees them (V8 waits for ~32 MiB
 * of young buffers), so V8 ran a full mark-compact every ~16 MiB received: 50-60 per GiB, which
 * doubled the process's CPU per byte (main thread 0.9 CPU-s/GiB against 0.6, V8's helper threads
 * 0.6 against 0.1). A heap growing factor of 5 gives ~35 MiB of slack, more than the young buffers
 * ever reach: 1-2 full GCs per GiB. Measured with 1 GiB in 8 MiB chunks on the 2-core machine, see
 * bench/README.md. An operator's own `node --heap-growing-percent=N` wins. The flag is read at
 * every full GC, so setting it now, before the first request, takes effect.
 */
function tuneHeapGrowth(): void {
  if (
    process.execArgv.some(
      (a) => a.startsWith('--heap-growing-percent') || a.startsWith('--heap_growing_percent'),
    )
  )
    return
  setFlagsFromString('--heap-growing-percent=400')
}

async function main(argv: readonly string[]): Promise<void> {
  tuneHeapGrowth()
  let config: Config
  knownSecrets = secretsOf(null, process.env)
  try {
    config = loadConfig(process.env, argv)
    refuseUnsupportedStorage(config)
  } catch (err) {
    if (
      err instanceof ConfigError ||
      (err as NodeJS.ErrnoException).code?.startsWith('ERR_PARSE_ARGS')
    ) {
      process.stderr.write(`ferry: ${printable((err as Error).message)}\n`)
      process.exit(2)
    }
    throw err
  }
  knownSecrets = secretsOf(config, process.env)
  const log = createLogger(config.logLevel)
  const app = await createApp(config, log)
  let stopping = false
  const stop = (signal: string) => {
    if (stopping) return
    stopping = true
    log.info({ signal }, 'shutting down')
    app.close().then(
      () => {
        log.info('stopped')
        process.exit(0)
      },
      (err: unknown) => {
        log.error({ err }, 'shutdown failed')
        process.exit(1)
      },
    )
  }
  process.on('SIGTERM', () => stop('SIGTERM'))
  process.on('SIGINT', () => stop('SIGINT'))
  await app.listen()
}

/** Starts the server; `argv`: its flags (--host, --port, --data-dir, --redis-url, --workers). */
export function runServer(argv: readonly string[]): void {
  main(argv).catch((err: unknown) => {
    process.stderr.write(
      `ferry: failed to start: ${printable((err as Error).stack ?? String(err))}\n`,
    )
    process.exit(1)
  })
}
