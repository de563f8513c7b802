/** Process entry: load config, build the app, listen, shut down cleanly on SIGTERM/SIGINT. */
import { ConfigError, loadConfig } from './config/config.js'
import { createApp } from './app.js'
import { createLogger } from './observability/logger.js'

async function main(): Promise<void> {
  let config
  try {
    config = loadConfig(process.env, process.argv.slice(2))
  } catch (err) {
    if (err instanceof ConfigError || (err as NodeJS.ErrnoException).code?.startsWith('ERR_PARSE_ARGS')) {
      process.stderr.write(`ferry: ${(err as Error).message}\n`)
      process.exit(2)
    }
    throw err
  }
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

main().catch((err: unknown) => {
  process.stderr.write(`ferry: failed to start: ${(err as Error).stack ?? String(err)}\n`)
  process.exit(1)
})
