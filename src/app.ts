/**
 * The composition root: the one place that makes the concrete state backend, worker pool,
 * storage layout, upload service and API families, and wires them into the HTTP server.
 */
import type { Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { Logger } from 'pino'
import type { Config } from './config/config.js'
import { Sweeper } from './core/expiry/sweeper.js'
import { DEFAULT_WORKER_FILE, HashPool } from './core/hashing/hash-pool.js'
import { createEmbeddedState } from './core/state/embedded.js'
import { createRedisState } from './core/state/redis.js'
import type { StateBackend } from './core/state/types.js'
import { createLayout, type DataLayout } from './core/storage/layout.js'
import { UploadService, type UploadHooks } from './core/uploads/uploads.js'
import type { Family } from './http/context.js'
import { createImageStoreFamily } from './http/imagestore/family.js'
import { createIngestFamily } from './http/ingest/family.js'
import { createStagingFamily } from './http/staging/family.js'
import { createShamanFamily } from './http/shaman/family.js'
import { createHttpServer, edgeOptionsFrom, type ReadyCheck } from './http/server.js'

/** What every API family may use. */
export interface Engine {
  readonly config: Config
  readonly layout: DataLayout
  readonly state: StateBackend
  readonly pool: HashPool
  readonly uploads: UploadService
  readonly log: Logger
  /** Adds a periodic cleanup task to the sweeper (GC, abandoned claims, …). */
  addSweepTask(task: () => Promise<unknown>): void
}

export interface App {
  readonly engine: Engine
  readonly server: Server
  listen(): Promise<AddressInfo>
  /**
   * Takes this instance out of (false) or back into (true) the load balancer's rotation: /healthz
   * and /readyz answer 503 while it is out; requests are still served. close() takes it out first.
   */
  setReady(ready: boolean): void
  /** Stops accepting, lets in-flight requests finish within the shutdown timeout, closes all. */
  close(): Promise<void>
}

/** Mounted families that take requests without credentials (ImageStore and Shaman without auth). */
export function openFamilies(config: Config): string[] {
  return [
    ...(config.imagestore.enabled && config.imagestore.auth === null ? ['imagestore'] : []),
    ...(config.shaman.enabled && config.shaman.auth === null ? ['shaman'] : []),
  ]
}

/** 127.0.0.0/8, ::1, localhost: only this machine can connect. */
export function isLoopback(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase()
  return h === 'localhost' || h === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h) || /^::ffff:127\./.test(h)
}


/** What tests may add to an app (never set by configuration). */
export interface AppOptions {
  /** Pauses injected into the data path, to reproduce races deterministically. */
  readonly uploadHooks?: UploadHooks
  /** Another boot id than the host's: a restart "after a reboot" (power-cut tests). */
  readonly bootId?: string
  /** More readiness checks for /readyz, after the state store's. */
  readonly readyChecks?: readonly ReadyCheck[]
}

export async function createApp(config: Config, log: Logger, options: AppOptions = {}): Promise<App> {
  const layout = createLayout(config.storage.dataDir)
  const limits = {
    maxSessions: config.sessions.maxSessions,
    maxRangesPerSession: config.sessions.maxRangesPerSession,
    maxChunksPerSession: config.sessions.maxChunksPerSession,
  }
  const state: StateBackend = config.redis.url
    ? await createRedisState(config.redis.url, config.redis.prefix, {
      limits, livenessMs: config.cluster.livenessMs, commandTimeoutMs: config.cluster.redisTimeoutMs,
      ...(options.bootId ? { bootId: options.bootId } : {}),
    })
    : createEmbeddedState(layout.state, {
      limits, journalMode: config.storage.fsync === 'chunk' ? 'sync' : 'background', log,
      ...(options.bootId ? { bootId: options.bootId } : {}),
    })
  const workers = config.pool.workers
  const pool = new HashPool({ workerFile: DEFAULT_WORKER_FILE, threads: workers, streamThreads: workers, streamsPerThread: 8, streamIdleMs: 30_000 })
  const uploads = new UploadService({
    sessions: state.sessions,
    pool,
    layout,
    log,
    durableChunks: config.storage.fsync === 'chunk',
    sessionTtlMs: config.sessions.ttlSec * 1000,
    reserveLeaseMs: config.sessions.reserveLeaseMs,
    commitLeaseMs: config.sessions.commitLeaseMs,
    minChunkBytes: config.sessions.minChunkBytes,
    instance: { id: state.instanceId, isAlive: (id) => state.isAlive(id) },
    ...(options.uploadHooks ? { hooks: options.uploadHooks } : {}),
    // Several instances may share Redis: a commit can ask the one that runs the session's hash.
    peers: state.peers,
  })
  await uploads.listenForPeers()
  const sweepTasks: (() => Promise<unknown>)[] = [() => uploads.sweep()]
  const engine: Engine = {
    config, layout, state, pool, uploads, log,
    addSweepTask: (t) => void sweepTasks.push(t),
  }
  // A family is mounted when it is enabled (FERRY_FAMILIES, FERRY_CONFIG `<family>.enabled`, or
  // for lakeFS and bulk ingest, their FERRY_CONFIG section).
  const { imagestore } = config
  const families: Family[] = [
    ...(imagestore.enabled
      ? [createImageStoreFamily({ uploads, maxUploadBytes: config.limits.maxUploadBytes, maxJsonBytes: config.limits.maxJsonBytes, auth: imagestore.auth, listPageSize: imagestore.listPageSize })]
      : []),
    ...(config.ingest ? [createIngestFamily(engine, config.ingest)] : []),
    ...(config.lakefs ? [createStagingFamily(engine, config.lakefs)] : []),
    ...(config.shaman.enabled ? [createShamanFamily(engine)] : []),
  ]
  let ready = false
  const server = createHttpServer({
    families,
    log,
    requestTimeoutMs: config.http.requestTimeoutMs,
    idleTimeoutMs: config.http.idleTimeoutMs,
    ready: () => ready,
    ...edgeOptionsFrom(config),
    // Readiness: the state backend answers (Redis up, the embedded journal writable).
    readyChecks: [async () => {
      try {
        await state.sessions.get('readyz:probe')
        return { ok: true }
      } catch {
        return { ok: false, reason: `the state store (${state.describe()}) does not answer` }
      }
    }, ...(options.readyChecks ?? [])],
  })
  const sweeper = new Sweeper(sweepTasks, log)
  let closing: Promise<void> | null = null

  return {
    engine,
    server,
    setReady(r) {
      ready = r
    },
    async listen() {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject)
        server.listen(config.http.port, config.http.host, () => {
          server.off('error', reject)
          resolve()
        })
      })
      ready = true
      sweeper.start(config.sessions.sweepIntervalSec * 1000)
      void sweeper.runOnce() // temp files orphaned by a crash go at start
      const addr = server.address() as AddressInfo
      log.info({
        host: addr.address, port: addr.port, dataDir: layout.root, state: state.describe(), workers,
        families: families.map((f) => f.name),
      }, `ferry listening on http://${addr.address}:${addr.port}`)
      const open = openFamilies(config)
      if (open.length > 0 && !isLoopback(config.http.host)) {
        log.warn({ host: config.http.host, families: open }, `anyone who reaches ${config.http.host} can write and delete through ${open.join(' and ')}: set FERRY_CONFIG <family>.auth, or turn them off (FERRY_FAMILIES)`)
      }
      return addr
    },
    close() {
      closing ??= (async () => {
        ready = false
        const drained = new Promise<void>((resolve) => server.close(() => resolve()))
        // Keep-alive sockets whose last request ends during the drain go at once, not after
        // their keep-alive timeout.
        server.closeIdleConnections()
        const idleSweep = setInterval(() => server.closeIdleConnections(), 50)
        let timer: NodeJS.Timeout | undefined
        const timedOut = new Promise<'timeout'>((resolve) => {
          timer = setTimeout(() => resolve('timeout'), config.http.shutdownTimeoutMs)
        })
        if ((await Promise.race([drained, timedOut])) === 'timeout') {
          log.warn({ timeoutMs: config.http.shutdownTimeoutMs }, 'in-flight requests cut at shutdown')
          server.closeAllConnections()
          await drained
        }
        clearTimeout(timer)
        clearInterval(idleSweep)
        await sweeper.stop()
        for (const f of families) await f.close?.()
        await uploads.close()
        await pool.close()
        await state.close()
      })()
      return closing
    },
  }
}
