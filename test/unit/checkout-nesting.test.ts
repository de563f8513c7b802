/**
 * Checkouts never nest, even when two instances create overlapping paths at once (issue 9, item
 * 12). The interleavings are forced with createCheckout's `beforePublish` hook; two instances are
 * two CasStores over their own state connections (one Redis prefix, or one embedded store), real
 * files.
 */
import { afterEach, beforeEach, describe, expect, test } from '@jest/globals'
import { existsSync, readdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import {
  CHECKOUT_MARK,
  CasStore,
  createCheckout,
  type CasKey,
  type CheckoutFile,
} from '../../src/core/cas/index.js'
import { UploadError } from '../../src/core/errors.js'
import { createEmbeddedState } from '../../src/core/state/embedded.js'
import { createRedisState } from '../../src/core/state/redis.js'
import type { StateBackend } from '../../src/core/state/types.js'
import {
  createLayout,
  createStores,
  type DataLayout,
  type DataStores,
} from '../../src/core/storage/layout.js'
import { createLogger } from '../../src/observability/logger.js'
import { seededBytes, sha256 } from '../helpers/http.js'
import { testRedisUrl, uniquePrefix } from '../helpers/redis.js'
import { removeDir, tempDir } from '../helpers/server.js'

const log = createLogger('silent')

/** Two state connections that see the same locks: two instances. */
const backends: { name: string; make(dir: string): Promise<[StateBackend, StateBackend]> }[] = [
  {
    name: 'redis',
    make: async () => {
      const prefix = uniquePrefix()
      return [
        await createRedisState(testRedisUrl(), prefix),
        await createRedisState(testRedisUrl(), prefix),
      ]
    },
  },
  {
    name: 'embedded',
    make: async (dir) => {
      const one = createEmbeddedState(join(dir, 'state'))
      return [one, one]
    },
  },
]

describe.each(backends)('overlapping checkouts on $name state', ({ make }) => {
  let dir: string
  let layout: DataLayout
  let stores: DataStores
  let states: [StateBackend, StateBackend]
  let cas: [CasStore, CasStore]
  let key: CasKey

  beforeEach(async () => {
    dir = tempDir('ferry-nest-')
    layout = createLayout(dir)
    stores = createStores(layout)
    states = await make(dir)
    cas = [
      new CasStore({
        objects: stores.cas,
        locker: states[0].locker,
        bus: states[0].bus,
        claimTtlMs: 2000,
        log,
      }),
      new CasStore({
        objects: stores.cas,
        locker: states[1].locker,
        bus: states[1].bus,
        claimTtlMs: 2000,
        log,
      }),
    ]
    const data = seededBytes(1000, 'nest')
    key = { sha256: sha256(data), size: data.length }
    const tmp = join(layout.tmp, 'blob.part')
    writeFileSync(tmp, data)
    expect(await cas[0].publish(tmp, key)).toBe('stored')
  })
  afterEach(async () => {
    for (const c of cas) await c.close()
    await states[0].close()
    if (states[1] !== states[0]) await states[1].close()
    removeDir(dir)
  })

  const files = (path: string): CheckoutFile[] => [{ ...key, path }]
  /**
   * Creates a checkout on instance `i`; `hook` runs with the tree built, before the final checks.
   */
  const create = (i: 0 | 1, path: string, hook?: () => Promise<void>) =>
    createCheckout(
      {
        cas: cas[i],
        checkouts: stores.checkouts,
        locker: states[i].locker,
        lockTtlMs: 5000,
        log,
        ...(hook ? { beforePublish: hook } : {}),
      },
      path,
      files('f.bin'),
    ).then(
      (p) => p,
      (err: unknown) => err,
    )

  function gate() {
    let reached = () => {}
    let release = () => {}
    const at = new Promise<void>((r) => (reached = r))
    const open = new Promise<void>((r) => (release = r))
    return {
      at,
      release,
      hook: async () => {
        reached()
        await open
      },
    }
  }
  const expectConflict = (v: unknown) => {
    expect(v).toBeInstanceOf(UploadError)
    expect((v as UploadError).code).toBe('ERR_ALREADY_EXISTS')
  }

  test('an outer checkout being built: a nested one on the other instance is refused at once; the outer one completes', async () => {
    const g = gate()
    const outer = create(0, 'job', g.hook)
    await g.at
    expectConflict(await create(1, 'job/inner'))
    g.release()
    expect(await outer).toBe('job')
    expect(readdirSync(join(layout.checkouts, 'job')).sort()).toEqual(
      [CHECKOUT_MARK, 'f.bin'].sort(),
    )
  })

  test('a nested checkout built first: the outer one on the other instance is refused; the nested one completes inside a plain folder', async () => {
    const g = gate()
    const inner = create(0, 'job/inner', g.hook)
    await g.at
    expectConflict(await create(1, 'job'))
    g.release()
    expect(await inner).toBe('job/inner')
    expect(existsSync(join(layout.checkouts, 'job', CHECKOUT_MARK))).toBe(false)
    expect(existsSync(join(layout.checkouts, 'job', 'inner', CHECKOUT_MARK))).toBe(true)
  })

  test('both start at once: at most one succeeds, and no checkout ends up inside another', async () => {
    const go = gate()
    const g0 = gate()
    const g1 = gate()
    const outer = create(0, 'job', async () => {
      void g0.hook()
      await go.at
    })
    const inner = create(1, 'job/inner', async () => {
      void g1.hook()
      await go.at
    })
    // Each has built its tree or already been refused; then both finish together.
    await Promise.all([Promise.race([g0.at, outer]), Promise.race([g1.at, inner])])
    void go.hook()
    const results = await Promise.all([outer, inner])
    const ok = results.filter((r) => typeof r === 'string')
    expect(ok.length).toBeLessThanOrEqual(1)
    const outerIsCheckout = existsSync(join(layout.checkouts, 'job', CHECKOUT_MARK))
    const innerIsCheckout = existsSync(join(layout.checkouts, 'job', 'inner', CHECKOUT_MARK))
    expect(outerIsCheckout && innerIsCheckout).toBe(false)
    // Nothing half-made is left: no temp directories anywhere.
    const stray = (d: string): string[] =>
      readdirSync(d, { withFileTypes: true }).flatMap((e) =>
        e.name.startsWith('.ferry-co-') && e.name !== CHECKOUT_MARK
          ? [e.name]
          : e.isDirectory()
            ? stray(join(d, e.name))
            : [],
      )
    expect(stray(layout.checkouts)).toEqual([])
  })
})
