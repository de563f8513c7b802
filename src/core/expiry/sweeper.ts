import type { Logger } from 'pino'

/** One periodic cleanup job: expired sessions and orphaned temp files, Shaman's GC, … */
export interface SweepTask {
  /** Names the task in log lines. */
  readonly name: string
  /**
   * Its own period, ms, when it differs from the sweeper's (Shaman GC runs daily, the temp sweep
   * every minute). Absent: the interval given to `start`.
   */
  readonly intervalMs?: number
  /** Runs once at `start` as well (the temp sweep: files orphaned by a crash go at once). */
  readonly runAtStart?: boolean
  /** One pass. A rejection is logged, never thrown. */
  run(): Promise<unknown>
}

/**
 * Runs each task on its own timer. A task never runs twice at once; different tasks do not wait
 * for each other, so a long GC pass does not hold up the sweep of expired sessions.
 */
export class Sweeper {
  readonly #tasks: readonly SweepTask[]
  readonly #log: Logger
  readonly #timers: NodeJS.Timeout[] = []
  readonly #running = new Map<SweepTask, Promise<void>>()

  constructor(tasks: readonly SweepTask[], log: Logger) {
    this.#tasks = tasks
    this.#log = log
  }

  /** Starts every task's timer (`intervalMs` for those without their own) and the start runs. */
  start(intervalMs: number): void {
    for (const t of this.#tasks) {
      const timer = setInterval(() => void this.#run(t), t.intervalMs ?? intervalMs)
      timer.unref()
      this.#timers.push(timer)
      if (t.runAtStart === true) void this.#run(t)
    }
  }

  /** One pass of every task now (joining a pass of a task already running). */
  async runOnce(): Promise<void> {
    await Promise.all(this.#tasks.map((t) => this.#run(t)))
  }

  #run(t: SweepTask): Promise<void> {
    let p = this.#running.get(t)
    if (p === undefined) {
      p = (async () => {
        try {
          await t.run()
        } catch (err) {
          this.#log.error({ err, task: t.name }, 'sweep failed')
        }
      })().finally(() => this.#running.delete(t))
      this.#running.set(t, p)
    }
    return p
  }

  /** Stops the timers and waits for the passes that are running. */
  async stop(): Promise<void> {
    for (const t of this.#timers) clearInterval(t)
    this.#timers.length = 0
    await Promise.all(this.#running.values())
  }
}
