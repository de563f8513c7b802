import { describe, expect, test } from '@jest/globals'
import { Writable } from 'node:stream'
import { pino } from 'pino'
import { Sweeper, type SweepTask } from '../../src/core/expiry/sweeper.js'

/** A task whose passes wait for `open()`; counts how often it was started. */
function gatedTask(name: string, extra: Partial<SweepTask> = {}) {
  let opened: () => void = () => {}
  const gate = new Promise<void>((r) => (opened = r))
  const t = {
    starts: 0,
    task: {
      name,
      ...extra,
      run: async () => {
        t.starts++
        await gate
      },
    } satisfies SweepTask,
    open() {
      opened()
    },
  }
  return t
}

const log = pino({ level: 'silent' })

describe('Sweeper', () => {
  test('start runs the runAtStart tasks at once and leaves the others to their timer', async () => {
    const temp = gatedTask('temp', { runAtStart: true })
    const gc = gatedTask('gc', { intervalMs: 3_600_000 })
    temp.open()
    gc.open()
    const s = new Sweeper([temp.task, gc.task], log)
    s.start(3_600_000)
    expect([temp.starts, gc.starts]).toEqual([1, 0])
    await s.stop()
  })

  test('a task never runs twice at once; another task does not wait for it', async () => {
    const slow = gatedTask('slow')
    const quick = gatedTask('quick')
    quick.open()
    const s = new Sweeper([slow.task, quick.task], log)
    const first = s.runOnce()
    await new Promise((r) => setImmediate(r))
    const second = s.runOnce()
    await new Promise((r) => setImmediate(r))
    expect(slow.starts).toBe(1) // the second pass joined the running one
    expect(quick.starts).toBe(2) // quick's first pass ended while slow's went on
    slow.open()
    await Promise.all([first, second])
  })

  test('a task with its own interval runs on it, whatever the sweeper interval', async () => {
    const fast = gatedTask('fast', { intervalMs: 10 })
    fast.open()
    const s = new Sweeper([fast.task], log)
    s.start(3_600_000)
    const until = Date.now() + 5000
    while (fast.starts < 3 && Date.now() < until) await new Promise((r) => setTimeout(r, 10))
    await s.stop()
    expect(fast.starts).toBeGreaterThanOrEqual(3)
  })

  test('stop waits for running passes; a failing task is logged, not thrown', async () => {
    const running = gatedTask('running', { runAtStart: true })
    const boom = () => Promise.reject(new Error('boom'))
    const failing: SweepTask = { name: 'failing', runAtStart: true, run: boom }
    const lines: { msg: string; task: string; err: { message: string } }[] = []
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        lines.push(JSON.parse(chunk.toString()))
        done()
      },
    })
    const s = new Sweeper([running.task, failing], pino({ level: 'error' }, sink))
    s.start(3_600_000)
    let stopped = false
    const stop = s.stop().then(() => (stopped = true))
    await new Promise((r) => setImmediate(r))
    expect(stopped).toBe(false)
    running.open()
    await stop
    expect(stopped).toBe(true)
    expect(lines).toMatchObject([
      { msg: 'sweep failed', task: 'failing', err: { message: 'boom' } },
    ])
  })
})
