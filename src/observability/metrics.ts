/**
 * Prometheus metrics of one app (prom-client), in a registry of its own: several apps in one
 * process (the tests) never share a series, and nothing registers into prom-client's global
 * default registry.
 *
 * Counting on the data path is cheap: body bytes go into a plain number per family (the counter
 * takes them at scrape time), the rest is a child per family bound once, called once per
 * chunk, commit or request.
 */
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client'
import type { UploadObserver } from '../core/uploads/observer.js'

/** What the metrics read at scrape time (each may fail: its series is then left out). */
export interface MetricsSources {
  /** Free bytes on the data directory's filesystem. */
  readonly diskFreeBytes?: () => Promise<number>
  /** Hash and join tasks waiting for a worker thread. */
  readonly hashQueueDepth?: () => number
  /** Upload sessions in the state store (shared by a fleet on Redis). */
  readonly sessionsOpen?: () => Promise<number>
}

let processRegistry: Registry | null = null

/**
 * Node's default process metrics (CPU, memory, event-loop lag, GC), collected once per process
 * in a registry of their own (still not prom-client's global one): they describe the process,
 * whichever app serves them, and each collection starts an event-loop-delay timer and a GC
 * observer that live as long as the process, so an app per test must not start another set.
 */
function processMetrics(): Promise<string> {
  if (processRegistry === null) {
    processRegistry = new Registry()
    collectDefaultMetrics({ register: processRegistry })
  }
  return processRegistry.metrics()
}

/** Label of requests the server answers itself (`/healthz`, `/readyz`, `/metrics`). */
export const EDGE_FAMILY = 'edge'
/** Label of requests no family took (404 before dispatch). */
export const NO_FAMILY = 'none'

const METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'])

/** Seconds: from a few ms (a small chunk on a fast disk) to minutes (a GiB-sized part). */
const DURATION_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300]

/** The counters one family's data path touches, bound to its label once. */
export interface FamilyMeter {
  /** Request body bytes read from clients. */
  readonly bytes: (n: number) => void
  readonly uploads: UploadObserver
}

export class FerryMetrics {
  readonly registry = new Registry()
  readonly #requests: Counter<'family' | 'method' | 'status'>
  readonly #bytes: Counter<'family'>
  readonly #created: Counter<'family'>
  readonly #finished: Counter<'family'>
  readonly #terminated: Counter<'family'>
  readonly #chunk: Histogram<'family'>
  readonly #commit: Histogram<'family'>
  readonly #dedup: Counter<'family'>
  readonly #redisErrors: Counter
  readonly #connections: Gauge
  readonly #meters = new Map<string, FamilyMeter>()
  /**
   * Body bytes not yet added to the counter, per family: the data path adds to a plain number
   * (once per packet of a body), the counter takes them when scraped.
   */
  readonly #pendingBytes = new Map<string, { n: number }>()

  constructor(sources: MetricsSources = {}) {
    const registers = [this.registry]
    this.#requests = new Counter({
      name: 'ferry_requests_total',
      help: 'HTTP requests answered, by API family, method and status (aborted: the client left)',
      labelNames: ['family', 'method', 'status'],
      registers,
    })
    const pendingBytes = this.#pendingBytes
    this.#bytes = new Counter({
      name: 'ferry_bytes_received_total',
      help: 'Request body bytes read from clients, by API family',
      labelNames: ['family'],
      registers,
      collect() {
        for (const [family, p] of pendingBytes) {
          this.inc({ family }, p.n)
          p.n = 0
        }
      },
    })
    this.#created = new Counter({
      name: 'ferry_uploads_created_total',
      help: 'Uploads begun: chunked sessions opened and whole-file bodies started, by family',
      labelNames: ['family'],
      registers,
    })
    this.#finished = new Counter({
      name: 'ferry_uploads_finished_total',
      help: 'Uploads whose bytes were all received: sessions committed, whole bodies stored',
      labelNames: ['family'],
      registers,
    })
    this.#terminated = new Counter({
      name: 'ferry_uploads_terminated_total',
      help: 'Upload sessions cancelled by their client, by family',
      labelNames: ['family'],
      registers,
    })
    this.#chunk = new Histogram({
      name: 'ferry_chunk_duration_seconds',
      help: 'Time to receive and store one chunk (a whole-file body counts as one chunk)',
      labelNames: ['family'],
      buckets: DURATION_BUCKETS,
      registers,
    })
    this.#commit = new Histogram({
      name: 'ferry_commit_duration_seconds',
      help: 'Time to commit a chunked session: hash, publish, record',
      labelNames: ['family'],
      buckets: DURATION_BUCKETS,
      registers,
    })
    this.#dedup = new Counter({
      name: 'ferry_dedup_hits_total',
      help: 'Uploads answered "already stored" by the content-addressed store, by family',
      labelNames: ['family'],
      registers,
    })
    this.#redisErrors = new Counter({
      name: 'ferry_redis_errors_total',
      help: 'Errors the Redis client reported (failed connects, dropped connections)',
      registers,
    })
    this.#connections = new Gauge({
      name: 'ferry_connections_open',
      help: 'Client connections open on this instance',
      registers,
    })
    const { diskFreeBytes, hashQueueDepth, sessionsOpen } = sources
    // The gauges below are read when scraped: nothing on the data path keeps them up to date.
    new Gauge({
      name: 'ferry_hash_queue_depth',
      help: 'Hash and join tasks waiting for a worker thread',
      registers,
      collect() {
        if (hashQueueDepth) this.set(hashQueueDepth())
      },
    })
    new Gauge({
      name: 'ferry_disk_free_bytes',
      help: "Free bytes (for unprivileged users) on the data directory's filesystem",
      registers,
      async collect() {
        if (!diskFreeBytes) return
        try {
          this.set(await diskFreeBytes())
        } catch {
          this.reset() // unknown: no sample rather than a stale one
        }
      },
    })
    const redisErrors = this.#redisErrors
    new Gauge({
      name: 'ferry_upload_sessions_open',
      help:
        'Upload sessions in the state store, committed ones kept until they expire included' +
        " (on Redis: the whole fleet's, the same on every instance)",
      registers,
      async collect() {
        if (!sessionsOpen) return
        try {
          this.set(await sessionsOpen())
        } catch {
          redisErrors.inc()
          this.reset()
        }
      },
    })
  }

  /** One answered request (called when its response closes, finished or not). */
  request(family: string, method: string | undefined, status: number | 'aborted'): void {
    const m = method !== undefined && METHODS.has(method) ? method : 'other'
    this.#requests.inc({ family, method: m, status: String(status) })
  }

  /** The pre-bound counters of one family (made on first use, then reused). */
  family(name: string): FamilyMeter {
    let meter = this.#meters.get(name)
    if (meter === undefined) {
      const pending = { n: 0 }
      this.#pendingBytes.set(name, pending)
      const created = this.#created.labels(name)
      const finished = this.#finished.labels(name)
      const terminated = this.#terminated.labels(name)
      const chunk = this.#chunk.labels(name)
      const commit = this.#commit.labels(name)
      const dedup = this.#dedup.labels(name)
      // Every series of the family shows from the start (0, not absent), so rate() and
      // increase() see its first upload.
      this.#bytes.inc({ family: name }, 0)
      for (const c of [created, finished, terminated, dedup]) c.inc(0)
      meter = {
        bytes: (n) => {
          pending.n += n
        },
        uploads: {
          created: () => created.inc(),
          finished: () => finished.inc(),
          terminated: () => terminated.inc(),
          chunk: (s) => chunk.observe(s),
          commit: (s) => commit.observe(s),
          dedupHit: () => dedup.inc(),
        },
      }
      this.#meters.set(name, meter)
    }
    return meter
  }

  redisError(): void {
    this.#redisErrors.inc()
  }

  connectionOpened(): void {
    this.#connections.inc()
  }

  connectionClosed(): void {
    this.#connections.dec()
  }

  /** The text exposition format: the process's metrics, then this app's. */
  async render(): Promise<{ contentType: string; body: string }> {
    const own = await this.registry.metrics()
    return { contentType: this.registry.contentType, body: (await processMetrics()) + own }
  }
}
