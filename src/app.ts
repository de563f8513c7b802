/**
 * The composition root: the one place that makes the concrete state backend, worker pool,
 * storage layout, upload service and API families, and wires them into the HTTP server.
 */
import type { Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { Logger } from 'pino'
import {
  ConfigError,
  type Config,
  type FsyncPolicy,
  type S3StorageConfig,
} from './config/config.js'
import { CasStore } from './core/cas/cas-store.js'
import { FileListPool } from './core/cas/file-list-pool.js'
import { createGcSweepTask } from './core/cas/gc-task.js'
import { Sweeper, type SweepTask } from './core/expiry/sweeper.js'
import { DEFAULT_WORKER_FILE, HashPool } from './core/hashing/hash-pool.js'
import { DEFAULT_INGEST_WORKER_FILE, IngestPool } from './core/hashing/ingest-pool.js'
import { BulkIngestService } from './core/ingest/bulk-ingest.js'
import { StagingMultipart } from './core/staging/multipart.js'
import { StagingStore } from './core/staging/store.js'
import { createEmbeddedState } from './core/state/embedded.js'
import type { JournalMode } from './core/state/journal.js'
import { createRedisState } from './core/state/redis.js'
import type { Locker, StateBackend } from './core/state/types.js'
import {
  createLayout,
  createStores,
  type DataLayout,
  type DataStores,
} from './core/storage/layout.js'
import { checkSpace, freeBytes } from './core/storage/space.js'
import { UploadService, type FinishedFile, type UploadHooks } from './core/uploads/uploads.js'
import type { Family } from './http/context.js'
import { createImageStoreFamily } from './http/imagestore/family.js'
import { createIngestFamily } from './http/ingest/family.js'
import { createStagingFamily } from './http/staging/family.js'
import { createShamanFamily } from './http/shaman/family.js'
import { createHttpServer, edgeOptionsFrom, type ReadyCheck } from './http/server.js'
import { createHttpHooks, type HttpHooks } from './core/hooks/index.js'
import { createCorsPolicy } from './http/cors.js'
import { FinishedUploads } from './http/tus/finished.js'
import type { FsObjectStore } from './core/storage/fs-object-store.js'
import { hasLocalPaths, hasToucher } from './core/storage/object-store.js'
import type { S3ObjectStore } from './core/storage/s3-object-store.js'
import { DiskSync } from './core/storage/disk-sync.js'
import { createTusFamily } from './http/tus/family.js'
import { FerryMetrics } from './observability/metrics.js'
import { loadUi } from './http/ui/family.js'

/**
 * The shared services the root built, for tests that look inside a running app (sessions, the
 * Locker). Families never see this: each gets its own deps object.
 */
export interface AppServices {
  readonly config: Config
  readonly layout: DataLayout
  /**
   * The families' object stores (the data directory's, or FERRY_STORAGE=s3's bucket) and the
   * one TempFiles (this instance's id).
   */
  readonly stores: DataStores<FsObjectStore | S3ObjectStore>
  readonly state: StateBackend
  readonly pool: HashPool
  readonly uploads: UploadService
  readonly log: Logger
  /** Shaman's store, when Shaman is mounted. */
  readonly cas: CasStore | null
  /** This app's own metrics registry (`GET /metrics`). */
  readonly metrics: FerryMetrics
}

/** Something the root built and closes at shutdown, after the HTTP server has drained. */
interface Closeable {
  close(): Promise<void>
}

export interface App {
  /** The services the root built (tests). */
  readonly engine: AppServices
  readonly server: Server
  listen(): Promise<AddressInfo>
  /**
   * Takes this instance out of (false) or back into (true) the load balancer's rotation: /healthz
   * and /readyz answer 503 while it is out; requests are still served. close() takes it out first.
   */
  setReady(ready: boolean): void
  /**
   * Takes the instance out of rotation (`/readyz` 503), keeps serving for the drain delay
   * (FERRY_DRAIN_DELAY_MS) so the load balancer sees it, then stops accepting, lets in-flight
   * requests finish within the shutdown timeout and closes all.
   */
  close(): Promise<void>
}

/** Mounted families that take requests without credentials (ImageStore and Shaman without auth). */
export function openFamilies(config: Config): string[] {
  return [
    ...(config.imagestore.enabled && config.imagestore.auth === null ? ['imagestore'] : []),
    ...(config.shaman.enabled && config.shaman.auth === null ? ['shaman'] : []),
    // tus has no credentials of its own (like tusd): a pre-create hook is where creations are
    // authorised; without one, anyone who reaches the port can upload and terminate.
    ...(config.tus.enabled && config.hooks.url === null ? ['tus'] : []),
  ]
}

/** 127.0.0.0/8, ::1, localhost: only this machine can connect. */
export function isLoopback(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase()
  return (
    h === 'localhost' ||
    h === '::1' ||
    /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h) ||
    /^::ffff:127\./.test(h)
  )
}

/**
 * Families that cannot run on FERRY_STORAGE=s3 yet, and the store capabilities they lack there
 * (the S3 store has none of the filesystem's: object-store.ts). tus, lakeFS staging and bulk
 * ingest need only the core operations (each says how it does without the others).
 */
const NOT_ON_S3: Readonly<Record<string, string>> = {
  shaman: 'Toucher and LocalPaths (checkouts are symlink trees into the CAS)',
}

/**
 * Refuses, before anything starts, a configuration that mounts a family the storage backend
 * cannot hold: the message names each family, what it needs, and how to leave it out.
 */
export function refuseUnsupportedStorage(config: Config): void {
  if (config.storage.backend !== 's3') return
  const mounted = {
    tus: config.tus.enabled,
    lakefs: config.lakefs !== null,
    ingest: config.ingest !== null,
    shaman: config.shaman.enabled,
  }
  const refused = Object.entries(mounted).filter(([f, on]) => on && f in NOT_ON_S3)
  if (refused.length > 0) {
    const why = refused.map(([f]) => `${f} needs ${NOT_ON_S3[f]}`).join('; ')
    throw new ConfigError(
      `FERRY_STORAGE=s3 cannot hold every mounted family: ${why}, which the S3 store lacks. ` +
        'Mount only the families it holds (FERRY_FAMILIES=imagestore,tus,lakefs,ingest), or ' +
        'use FERRY_STORAGE=fs',
    )
  }
  const s3 = config.storage.s3
  if (config.lakefs !== null && s3 !== null) {
    // Physical addresses name the objects in the bucket: a repository's namespace must be where
    // its staging objects are, so an address is the object's own s3:// URI.
    for (const repo of config.lakefs.repositories) {
      const want = lakeFsNamespaceOnS3(s3, repo.name)
      if (repo.storageNamespace.replace(/\/+$/, '') !== want) {
        throw new ConfigError(
          `lakefs.repositories ${repo.name}: with FERRY_STORAGE=s3 its storageNamespace must be ` +
            `${want} (where its staging objects are in the bucket), not ${repo.storageNamespace}`,
        )
      }
    }
  }
}

/** The storage namespace of a lakeFS repository whose staging area is in the bucket. */
export function lakeFsNamespaceOnS3(s3: S3StorageConfig, repository: string): string {
  return `s3://${s3.bucket}/${s3.prefix}staging/${repository}`
}

/** The S3 store of each area, all in one bucket under `<FERRY_S3_PREFIX><area>/`. */
async function s3Stores(s3: S3StorageConfig, locker: Locker, lockTtlMs: number, log: Logger) {
  // Loaded only with FERRY_STORAGE=s3: the SDK costs the filesystem backend nothing.
  const { createS3Client } = await import('./core/storage/s3-client.js')
  const { S3ObjectStore } = await import('./core/storage/s3-object-store.js')
  const client = createS3Client({
    endpoint: s3.endpoint,
    region: s3.region,
    forcePathStyle: s3.forcePathStyle,
    log: log.child({ component: 's3' }),
  })
  const area = (name: string) =>
    new S3ObjectStore({
      client,
      bucket: s3.bucket,
      prefix: `${s3.prefix}${name}/`,
      locker,
      lockTtlMs,
    })
  const { HeadBucketCommand } = await import('@aws-sdk/client-s3')
  /** Readiness: the bucket answers (reachable, exists, the credentials may use it). */
  const ready: ReadyCheck = async () => {
    try {
      await client.send(new HeadBucketCommand({ Bucket: s3.bucket }))
      return { ok: true }
    } catch (err) {
      const status = (err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode
      const why = status === undefined ? (err as Error).name : `HTTP ${status}`
      return { ok: false, reason: `the bucket s3://${s3.bucket} does not answer (${why})` }
    }
  }
  return { client, area, ready }
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

/** The embedded state journal's durability per FERRY_FSYNC. */
const JOURNAL_MODES: Readonly<Record<FsyncPolicy, JournalMode>> = {
  commit: 'background',
  chunk: 'sync',
  none: 'none',
}

export async function createApp(
  config: Config,
  log: Logger,
  options: AppOptions = {},
): Promise<App> {
  refuseUnsupportedStorage(config)
  const layout = createLayout(config.storage.dataDir)
  const limits = {
    maxSessions: config.sessions.maxSessions,
    maxRangesPerSession: config.sessions.maxRangesPerSession,
    maxChunksPerSession: config.sessions.maxChunksPerSession,
  }
  const redisState = config.redis.url
    ? await createRedisState(config.redis.url, config.redis.prefix, {
        limits,
        livenessMs: config.cluster.livenessMs,
        commandTimeoutMs: config.cluster.redisTimeoutMs,
        ...(options.bootId ? { bootId: options.bootId } : {}),
      })
    : null
  const state: StateBackend =
    redisState ??
    createEmbeddedState(layout.state, {
      limits,
      journalMode: JOURNAL_MODES[config.storage.fsync],
      log,
      ...(options.bootId ? { bootId: options.bootId } : {}),
    })
  // One set of stores for every service: one TempFiles names all temp files with this
  // instance's id, so the uploads sweep tells this instance's streams from a dead one's.
  const sync = config.storage.fsync === 'none' ? DiskSync.off : DiskSync.on
  const s3 =
    config.storage.s3 === null
      ? null
      : await s3Stores(config.storage.s3, state.locker, config.locks.ttlMs, log)
  const stores: DataStores<FsObjectStore | S3ObjectStore> =
    s3 === null
      ? createStores(layout, state.instanceId, undefined, sync)
      : createStores(layout, state.instanceId, s3.area, sync)
  if (s3 !== null) {
    log.info(
      { storage: `s3://${config.storage.s3!.bucket}/${config.storage.s3!.prefix}` },
      'families keep their files in the bucket',
    )
  }
  const workers = config.pool.workers
  const pool = new HashPool({
    workerFile: DEFAULT_WORKER_FILE,
    threads: workers,
    streamThreads: workers,
    streamsPerThread: config.pool.streamsPerThread,
    streamIdleMs: config.pool.streamIdleMs,
    sync: sync.enabled,
  })
  const hooks: HttpHooks | null =
    config.hooks.url === null
      ? null
      : createHttpHooks({
          url: config.hooks.url,
          logger: log.child({ component: 'hooks' }),
        })
  // FERRY_STORAGE=s3: ImageStore's chunked sessions go to the bucket as they arrive (grid.ts).
  const grid =
    s3 === null
      ? null
      : (await import('./core/uploads/grid-setup.js')).createSessionGrid({
          s3: config.storage.s3!,
          client: s3.client,
          imagestore: stores.store as S3ObjectStore,
          state,
          log,
        })
  const uploads = new UploadService({
    ...(grid !== null ? { grid } : {}),
    sessions: state.sessions,
    pool,
    temps: stores.temps,
    log,
    durableChunks: config.storage.fsync === 'chunk',
    sync,
    sessionTtlMs: config.sessions.ttlSec * 1000,
    reserveLeaseMs: config.sessions.reserveLeaseMs,
    commitLeaseMs: config.sessions.commitLeaseMs,
    minChunkBytes: config.sessions.minChunkBytes,
    isAlive: (id) => state.isAlive(id),
    ...(options.uploadHooks ? { hooks: options.uploadHooks } : {}),
    // Several instances may share Redis: a commit can ask the one that runs the session's hash.
    peers: state.peers,
    ...(hooks !== null
      ? {
          onFinished: (f: FinishedFile) =>
            void hooks.notify('post-finish', {
              id: f.id,
              family: f.family,
              size: f.size,
              sha256: f.sha256,
              metadata: f.metadata ?? {},
            }),
        }
      : {}),
  })
  await uploads.listenForPeers()
  const metrics = new FerryMetrics({
    diskFreeBytes: () => freeBytes(layout.root),
    hashQueueDepth: () => pool.queueDepth,
    sessionsOpen: () => state.sessions.count(),
  })
  // The Redis client reports each failed connect and dropped connection (it reconnects itself).
  redisState?.redis.on('error', () => metrics.redisError())
  /** The upload service as one family uses it: its uploads counted under the family's name. */
  const uploadsOf = (family: string) => uploads.observedBy(metrics.family(family).uploads)
  const sweepTasks: SweepTask[] = [
    { name: 'uploads', runAtStart: true, run: () => uploads.sweep() },
  ]
  // Services of the families, closed in this order after the server has drained.
  const familyServices: Closeable[] = []
  const { maxUploadBytes, maxJsonBytes } = config.limits
  // A family is mounted when it is enabled (FERRY_FAMILIES, FERRY_CONFIG `<family>.enabled`, or
  // for lakeFS and bulk ingest, their FERRY_CONFIG section).
  const families: Family[] = []
  const { imagestore, shaman, lakefs, ingest } = config
  const cors = createCorsPolicy(config.cors)
  if (config.tus.enabled) {
    const finished = new FinishedUploads(stores.tus, stores.temps)
    // Concatenation copies on its own worker thread (started on first use).
    const concat = new IngestPool({
      workerFile: DEFAULT_INGEST_WORKER_FILE,
      threads: 1,
      sync: sync.enabled,
    })
    familyServices.push(concat)
    families.push(
      createTusFamily({
        uploads: uploadsOf('tus'),
        finished,
        locker: state.locker,
        concat,
        cors,
        hooks,
        settings: {
          path: config.tus.path,
          maxSizeBytes: config.tus.maxSizeBytes || maxUploadBytes,
          sessionTtlMs: config.sessions.ttlSec * 1000,
          lockTtlMs: config.locks.ttlMs,
          publicUrl: config.http.publicUrl,
        },
      }),
    )
    if (config.tus.retentionSec > 0) {
      const maxAgeMs = config.tus.retentionSec * 1000
      sweepTasks.push({
        name: 'tus-retention',
        runAtStart: true,
        run: () => finished.sweep(maxAgeMs),
      })
    }
  }
  if (config.ui.enabled) {
    // The page calls the tus endpoint where clients reach this server (FERRY_PUBLIC_URL).
    const tusEndpoint = `${config.http.publicUrl ?? ''}${config.tus.path}`
    const ui = await loadUi({
      path: config.ui.path,
      tusEndpoint,
      maxFileBytes: config.tus.maxSizeBytes || maxUploadBytes,
    })
    if (ui !== null) families.push(ui)
    else log.warn('the browser uploader is not built (npm run build): FERRY_UI_PATH answers 404')
  }
  if (imagestore.enabled) {
    families.push(
      createImageStoreFamily({
        uploads: uploadsOf('imagestore'),
        objects: stores.store,
        maxUploadBytes,
        maxJsonBytes,
        auth: imagestore.auth,
        listPageSize: imagestore.listPageSize,
      }),
    )
  }
  if (ingest) {
    const ingestPool = new IngestPool({
      workerFile: DEFAULT_INGEST_WORKER_FILE,
      threads: Math.min(workers, ingest.maxParallel),
      sync: sync.enabled,
    })
    const ingestUploads = uploadsOf('ingest')
    const service = new BulkIngestService({
      objects: stores.ingest,
      temps: stores.temps,
      locker: state.locker,
      pool: ingestPool,
      log: log.child({ family: 'ingest' }),
      lockTtlMs: config.locks.ttlMs,
      lockWaitMs: ingest.lockWaitMs,
      publishWaitMs: ingest.publishWaitMs,
      maxParallel: ingest.maxParallel,
    })
    familyServices.push(service, ingestPool)
    families.push(
      createIngestFamily({
        ingest: service,
        uploads: ingestUploads,
        jwt: ingest.jwt,
        maxUploadBytes,
      }),
    )
  }
  if (lakefs) {
    const lakefsUploads = uploadsOf('lakefs')
    const staging = stores.staging
    const store = new StagingStore({
      config: lakefs,
      objects: staging,
      uploads: lakefsUploads,
      pool,
      maxUploadBytes,
    })
    let multipart: StagingMultipart | null = null
    if (lakefs.presignMultipart) {
      multipart = new StagingMultipart({
        config: lakefs,
        // The staging area's store: the uploads' folders sit beside the addresses they fill.
        objects: staging,
        uploads: lakefsUploads,
        pool,
        store,
        locker: state.locker,
        lockTtlMs: config.locks.ttlMs,
        maxUploadBytes,
        idleTtlMs: config.sessions.ttlSec * 1000,
        log: log.child({ family: 'lakefs' }),
      })
      const mp = multipart
      // Abandoned multipart uploads go on the session sweep's period and idle TTL.
      sweepTasks.push({ name: 'lakefs-multipart', run: () => mp.sweep() })
    }
    families.push(
      createStagingFamily({
        cors,
        announce: (f) => uploads.announceFinished(f),
        store,
        lakefs,
        maxUploadBytes,
        maxJsonBytes,
        publicUrl: config.http.publicUrl,
        multipart,
      }),
    )
  }
  let cas: CasStore | null = null
  if (shaman.enabled) {
    const shamanLog = log.child({ family: 'shaman' })
    const lockTtlMs = config.locks.ttlMs
    const casObjects = stores.cas
    if (!(hasToucher(casObjects) && hasLocalPaths(casObjects))) {
      throw new ConfigError(`shaman: ${NOT_ON_S3['shaman']}`)
    }
    cas = new CasStore({
      objects: casObjects,
      locker: state.locker,
      bus: state.bus,
      claimTtlMs: lockTtlMs,
      log: shamanLog,
    })
    // Not awaited: Ferry starts without the subscription, and the uploads that need it fail.
    cas.start().catch((err: unknown) => {
      shamanLog.error({ err }, 'shaman could not subscribe to the bus')
    })
    const lists = new FileListPool(shaman.fileListThreads)
    if (shaman.gcIntervalSec > 0) {
      sweepTasks.push(
        createGcSweepTask({
          cas,
          checkouts: stores.checkouts,
          locker: state.locker,
          lockTtlMs,
          maxAgeMs: shaman.gcMaxAgeSec * 1000,
          intervalMs: shaman.gcIntervalSec * 1000,
          log: shamanLog,
        }),
      )
    }
    familyServices.push(cas, lists)
    families.push(
      createShamanFamily({
        cas,
        lists,
        uploads: uploadsOf('shaman'),
        locker: state.locker,
        checkouts: stores.checkouts,
        settings: {
          auth: shaman.auth,
          lockTtlMs,
          maxUploadBytes,
          maxJsonBytes,
        },
      }),
    )
  }
  // Closed last: its sockets serve the families' requests until then.
  if (s3 !== null) familyServices.push({ close: async () => s3.client.destroy() })
  const engine: AppServices = { config, layout, stores, state, pool, uploads, log, cas, metrics }
  let ready = false
  const server = createHttpServer({
    families,
    log,
    requestTimeoutMs: config.http.requestTimeoutMs,
    idleTimeoutMs: config.http.idleTimeoutMs,
    ready: () => ready,
    ...edgeOptionsFrom(config),
    metrics,
    // Readiness: the state backend answers (Redis up, the embedded journal writable), and the
    // data directory takes a write and has the configured free space.
    readyChecks: [
      async () => {
        try {
          await state.sessions.get('readyz:probe')
          return { ok: true }
        } catch {
          return { ok: false, reason: `the state store (${state.describe()}) does not answer` }
        }
      },
      () => checkSpace(layout.root, config.storage.readyMinFreeBytes, state.instanceId),
      ...(s3 !== null ? [s3.ready] : []),
      ...(options.readyChecks ?? []),
    ],
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
      // Temp files orphaned by a crash go at start (the uploads task runs at once).
      sweeper.start(config.sessions.sweepIntervalSec * 1000)
      const addr = server.address() as AddressInfo
      log.info(
        {
          host: addr.address,
          port: addr.port,
          dataDir: layout.root,
          state: state.describe(),
          workers,
          families: families.map((f) => f.name),
        },
        `ferry listening on http://${addr.address}:${addr.port}`,
      )
      if (config.storage.fsync === 'none') {
        log.warn(
          { fsync: 'none' },
          'FERRY_FSYNC=none: nothing is fsynced (files, folders, the state journal); publication is still atomic, but a power loss or kernel crash may lose or empty files answered as stored',
        )
      }
      const open = openFamilies(config)
      if (open.length > 0 && !isLoopback(config.http.host)) {
        log.warn(
          { host: config.http.host, families: open },
          `anyone who reaches ${config.http.host} can write and delete through ${open.join(' and ')}: set FERRY_CONFIG <family>.auth (tus: FERRY_HOOK_URL, a pre-create hook), or turn them off (FERRY_FAMILIES)`,
        )
      }
      return addr
    },
    close() {
      closing ??= (async () => {
        ready = false
        // Out of rotation first: the load balancer's health check sees 503 while this instance
        // still serves whatever it sends meanwhile, and only then does it stop accepting.
        if (config.http.drainDelayMs > 0) {
          log.info({ drainDelayMs: config.http.drainDelayMs }, 'not ready; draining')
          await new Promise((r) => setTimeout(r, config.http.drainDelayMs))
        }
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
          log.warn(
            { timeoutMs: config.http.shutdownTimeoutMs },
            'in-flight requests cut at shutdown',
          )
          server.closeAllConnections()
          await drained
        }
        clearTimeout(timer)
        clearInterval(idleSweep)
        // The sweeper's tasks (Shaman GC included) end before the services they use close.
        await sweeper.stop()
        for (const f of families) await f.close?.()
        for (const s of familyServices) await s.close()
        // Post-* events still queued get a moment to go out; the uploads are already safe.
        await hooks?.close({ timeoutMs: 2000 })
        await uploads.close()
        await pool.close()
        await state.close()
      })()
      return closing
    },
  }
}
