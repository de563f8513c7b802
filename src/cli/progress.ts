/**
 * Progress on stderr: a bar per file on a terminal (cli-progress), plain lines otherwise (a log
 * file or CI shows one line a second per file, not a redrawn bar).
 */
import cliProgress from 'cli-progress'

export interface FileProgress {
  /** The upload starts, `resumedFrom` bytes already on the server (0 for a fresh upload). */
  begin(resumedFrom: number): void
  /** Bytes the server holds or is being sent now, of the file's total. */
  update(bytes: number): void
  /** One more request retried; `reason` says why (shown on plain output). */
  retried(reason: string): void
  /** The upload finished (or failed): stop drawing this file. */
  finish(): void
}

export interface Reporter {
  file(name: string, total: number): FileProgress
  /** A line of its own, above any bars. */
  note(line: string): void
  stop(): void
}

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB']

export function formatBytes(n: number): string {
  let v = n
  let u = 0
  while (v >= 1024 && u < UNITS.length - 1) {
    v /= 1024
    u++
  }
  return u === 0 ? `${n} B` : `${v.toFixed(1)} ${UNITS[u]}`
}

function formatEta(sec: number): string {
  if (!Number.isFinite(sec)) return '--'
  const s = Math.round(sec)
  if (s < 60) return `${s}s`
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`
}

/** Rate over what this run sent (resumed bytes are not "speed"), and the time left at it. */
export class Meter {
  readonly #startMs: number
  readonly #from: number
  constructor(from: number, startMs = Date.now()) {
    this.#from = from
    this.#startMs = startMs
  }
  stats(bytes: number, total: number, nowMs = Date.now()): { rate: string; eta: string } {
    const sec = (nowMs - this.#startMs) / 1000
    // Done: the average over the whole run, however short (an upload finished between two
    // redraws, under 50 ms, once showed "0 B/s | ETA --" on its final bar).
    const done = bytes >= total
    const bps = sec > 0.05 || done ? Math.max(0, bytes - this.#from) / Math.max(sec, 0.001) : 0
    return {
      rate: `${formatBytes(Math.round(bps))}/s`,
      eta: done ? '0s' : formatEta(bps > 0 ? (total - bytes) / bps : Infinity),
    }
  }
}

function barReporter(stream: NodeJS.WriteStream): Reporter {
  const multi = new cliProgress.MultiBar(
    {
      stream,
      format:
        '{name} [{bar}] {percentage}% | {done}/{size} | {rate} | ETA {left} | retries {retries}',
      barCompleteChar: '█',
      barIncompleteChar: '░',
      hideCursor: true,
      clearOnComplete: false,
      stopOnComplete: false,
      autopadding: true,
      fps: 5,
    },
    cliProgress.Presets.shades_classic,
  )
  return {
    file(name, total) {
      let meter = new Meter(0)
      let retries = 0
      let bytes = 0
      const payload = () => ({
        name,
        done: formatBytes(bytes),
        size: formatBytes(total),
        retries,
        // Not `eta`: cli-progress fills its own {eta} (bare seconds) over the payload's.
        ...(({ rate, eta }) => ({ rate, left: eta }))(meter.stats(bytes, total)),
      })
      const bar = multi.create(Math.max(1, total), 0, payload())
      return {
        begin(from) {
          meter = new Meter(from)
          bytes = from
          bar.update(total === 0 ? 0 : from, payload())
        },
        update(n) {
          bytes = n
          bar.update(total === 0 ? 1 : n, payload())
        },
        retried() {
          retries++
          bar.update(payload())
        },
        finish() {
          if (total === 0) bytes = 0
          bar.update(total === 0 ? 1 : bytes, payload())
          bar.stop()
        },
      }
    },
    note(line) {
      // MultiBar prints logged lines above the bars at its next redraw: force one now.
      multi.log(`${line}\n`)
      multi.update()
    },
    stop() {
      multi.stop()
    },
  }
}

function lineReporter(stream: NodeJS.WritableStream): Reporter {
  return {
    file(name, total) {
      let meter = new Meter(0)
      let retries = 0
      let bytes = 0
      let lastMs = 0
      const line = () => {
        const { rate, eta } = meter.stats(bytes, total)
        const pct = total === 0 ? 100 : Math.floor((bytes / total) * 100)
        stream.write(
          `${name}: ${formatBytes(bytes)} of ${formatBytes(total)} (${pct}%), ${rate}, ` +
            `ETA ${eta}, retries ${retries}\n`,
        )
      }
      return {
        begin(from) {
          meter = new Meter(from)
          bytes = from
          lastMs = Date.now()
          stream.write(
            from > 0
              ? `${name}: resuming at ${formatBytes(from)} of ${formatBytes(total)}\n`
              : `${name}: uploading ${formatBytes(total)}\n`,
          )
        },
        update(n) {
          bytes = n
          const now = Date.now()
          if (now - lastMs >= 1000) {
            lastMs = now
            line()
          }
        },
        retried(reason) {
          retries++
          stream.write(`${name}: retry ${retries}: ${reason}\n`)
        },
        finish() {
          line()
        },
      }
    },
    note(line) {
      stream.write(`${line}\n`)
    },
    stop() {},
  }
}

export function createReporter(stream: NodeJS.WriteStream, quiet: boolean): Reporter {
  if (quiet) {
    const none: FileProgress = { begin() {}, update() {}, retried() {}, finish() {} }
    return { file: () => none, note: (l) => void stream.write(`${l}\n`), stop() {} }
  }
  return stream.isTTY ? barReporter(stream) : lineReporter(stream)
}
