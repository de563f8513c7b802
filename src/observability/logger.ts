import { pino, type DestinationStream, type Logger, type LevelWithSilent } from 'pino'

export type { Logger }

/**
 * Paths pino censors whatever logs them: credentials must never reach a log line even when a
 * whole request or header set is logged by mistake (issue 17 item 11).
 */
export const LOG_REDACT_PATHS: readonly string[] = [
  'authorization',
  'headers.authorization',
  'headers.cookie',
  'req.headers.authorization',
  'req.headers.cookie',
  'password',
  'secret',
  'token',
]

/**
 * The process logger. JSON lines on stdout (or `destination`, for tests that read the lines);
 * each request gets a child with its `reqId`.
 */
export function createLogger(
  level: LevelWithSilent,
  name = 'ferry',
  destination?: DestinationStream,
): Logger {
  const opts = {
    name,
    level,
    base: { pid: process.pid },
    redact: { paths: [...LOG_REDACT_PATHS], censor: '[REDACTED]' },
  }
  return destination ? pino(opts, destination) : pino(opts)
}
