import { pino, type Logger, type LevelWithSilent } from 'pino'

export type { Logger }

/** The process logger. JSON lines on stdout; each request gets a child with its `reqId`. */
export function createLogger(level: LevelWithSilent, name = 'ferry'): Logger {
  return pino({ name, level, base: { pid: process.pid } })
}
