import type { Logger } from 'pino'
import type { SweepTask } from '../expiry/sweeper.js'
import type { Locker } from '../state/types.js'
import type { ObjectStore, SymlinkTrees } from '../storage/object-store.js'
import type { CasStore } from './cas-store.js'
import { collectGarbage } from './gc.js'

export interface GcTaskOptions {
  readonly cas: CasStore
  /** The checkouts, whose symlinks keep their blobs. */
  readonly checkouts: ObjectStore & SymlinkTrees
  readonly locker: Locker
  readonly lockTtlMs: number
  /** Blobs untouched for this long and used by no checkout are collected, ms. */
  readonly maxAgeMs: number
  /** The GC's own period, ms. The first pass runs one period after start, not at start. */
  readonly intervalMs: number
  readonly log: Logger
}

/** Shaman's garbage collection as a sweeper task (on its own period). */
export function createGcSweepTask(o: GcTaskOptions): SweepTask {
  return {
    name: 'shaman-gc',
    intervalMs: o.intervalMs,
    run: () =>
      collectGarbage({
        cas: o.cas,
        checkouts: o.checkouts,
        locker: o.locker,
        lockTtlMs: o.lockTtlMs,
        maxAgeMs: o.maxAgeMs,
        log: o.log,
      }).catch((err: unknown) => o.log.error({ err }, 'shaman garbage collection failed')),
  }
}
