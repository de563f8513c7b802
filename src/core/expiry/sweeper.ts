import type { Logger } from 'pino'

/** Runs `tasks` every `intervalMs` (never two passes at once); errors are logged, not thrown. */
export class Sweeper {
  readonly #tasks: readonly (() => Promise<unknown>)[]
  readonly #log: Logger
  #timer: NodeJS.Timeout | null = null
  #running: Promise<void> | null = null

  constructor(tasks: readonly (() => Promise<unknown>)[], log: Logger) {
    this.#tasks = tasks
    this.#log = log
  }

  start(intervalMs: number): void {
    this.#timer = setInterval(() => void this.runOnce(), intervalMs)
    this.#timer.unref()
  }

  /** One pass now (or joins the pass already running). */
  runOnce(): Promise<void> {
    this.#running ??= (async () => {
      for (const t of this.#tasks) {
        try {
          await t()
        } catch (err) {
          this.#log.error({ err }, 'sweep failed')
        }
      }
    })().finally(() => {
      this.#running = null
    })
    return this.#running
  }

  async stop(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer)
    this.#timer = null
    await this.#running
  }
}
