/**
 * One chaos run: up to three phases side by side, each its own Ferry deployment, uploaders,
 * fault injectors and observer; then a drain without faults, a final check, and a report.
 *
 *   phase "redis"     two instances on a private redis-server (appendonly), each behind a chaos
 *                     proxy; SIGKILL loop (aimed at commits in flight half of the time), SIGSTOP
 *                     stalls, Redis killed and restarted with its appendonly file or with nothing
 *   phase "embedded"  one instance on the embedded store, same data dir on every restart; kills
 *                     and stalls
 *   phase "disk"      one embedded instance whose data dir is a small tmpfs that is filled to the
 *                     last byte for a while (with a kill while full), then freed
 *
 * Invariants (a failure makes the run fail): no wrong or partial file ever visible under store/
 * or cas/, every upload completes with the right bytes, no process dies on its own, every restart
 * comes up, no temp file left after the final sweep (when asked). Goals: commit wait p99 after a
 * kill within the limit, the number of kills reached.
 */
import { execFileSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { open, readFile, unlink } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { sha256 } from '../helpers/http.js'
import { freePort, uniquePrefix } from '../helpers/redis.js'
import {
  LostUpload,
  newImageStoreUpload,
  newShamanUpload,
  newTraffic,
  runImageStoreUpload,
  runShamanUpload,
  type ImageStoreUpload,
  type ShamanUpload,
  type Traffic,
} from './clients.js'
import { ChaosRedis, FerryInstance, healthy, type ExitRecord } from './instances.js'
import { StoreObserver, type Violation } from './observer.js'
import { ChaosProxy, type ProxyAction, type ProxyCounts } from './proxy.js'
import { percentile, Rng, sleep } from './rng.js'
import { seededBytes } from '../helpers/http.js'

export type PhaseName = 'redis' | 'embedded' | 'disk'

export interface ChaosOptions {
  readonly seed: number
  /** Faults stop once this many SIGKILLs are done over all phases (or `minutes` pass). */
  readonly kills: number
  readonly minutes: number
  /** ... but not before this many seconds of faults (so that every kind of fault gets its turn). */
  readonly minFaultSec: number
  readonly phases: readonly PhaseName[]
  /** Uploads running at once, per phase. */
  readonly concurrency: Readonly<Record<PhaseName, number>>
  readonly maxFileBytes: number
  /** Random pause between two kills of one phase, ms. */
  readonly killEveryMs: readonly [number, number]
  /** SIGSTOP length, s (issue 17: 1–40 s). */
  readonly stallSec: readonly [number, number]
  readonly stallEveryMs: readonly [number, number]
  readonly redisRestartEveryMs: readonly [number, number]
  /** Share of proxied connections that get a fault. */
  readonly proxyFaultRate: number
  /** After the faults stop, how long uploads may take to finish before they count as lost, s. */
  readonly drainSec: number
  /** After the drain, how long the sweeper gets to empty tmp/, s (0: not checked). */
  readonly sweepWaitSec: number
  /** Leftovers in tmp/ after the sweep wait fail the run (else they are only reported). */
  readonly leftoversFail: boolean
  /** Goal: p99 commit wait after a kill, ms (0: no goal). */
  readonly commitWaitLimitMs: number
  /** A request idle this long is dropped and retried by the client, ms. */
  readonly idleTimeoutMs: number
  /** tmpfs size of the disk phase, bytes; and how long it stays full, s. */
  readonly diskBytes: number
  readonly diskFullSec: number
  /** Extra Ferry settings for every instance (FERRY_*). */
  readonly ferryEnv: Readonly<Record<string, string>>
  /** Where the JSON and markdown reports go; their file name stem. */
  readonly resultsDir: string
  readonly label: string
  readonly log: (line: string) => void
}

interface Kill {
  readonly atMs: number
  readonly instance: string
  readonly during: 'commit' | 'chunk' | 'idle'
}

interface Interval {
  readonly startMs: number
  endMs: number
  readonly what: string
}

function between(rng: Rng, [a, b]: readonly [number, number]): number {
  return a + rng.next() * (b - a)
}

class Shared {
  kills = 0
  faultsOn = true
  constructor(readonly o: ChaosOptions) {}
}

class Phase {
  readonly name: PhaseName
  readonly #o: ChaosOptions
  readonly #shared: Shared
  readonly rng: Rng
  dataDir = ''
  #mounted = false
  redis: ChaosRedis | null = null
  instances: FerryInstance[] = []
  proxies: ChaosProxy[] = []
  traffic!: Traffic
  observer!: StoreObserver
  readonly versions = new Map<string, Map<string, number>>()
  readonly #byPath = new Map<string, ImageStoreUpload>()
  readonly uploads: ImageStoreUpload[] = []
  readonly shaman: ShamanUpload[] = []
  readonly kills: Kill[] = []
  readonly stalls: Interval[] = []
  readonly redisRestarts: Interval[] = []
  readonly diskFull: Interval[] = []
  readonly restartMs: number[] = []
  readonly #busy = new Set<FerryInstance>()
  #n = 0
  finalWrong: string[] = []
  leftovers: string[] = []
  unhealthyAtEnd: string[] = []
  errors: string[] = []

  constructor(name: PhaseName, o: ChaosOptions, shared: Shared, rng: Rng) {
    this.name = name
    this.#o = o
    this.#shared = shared
    this.rng = rng
  }

  get #env(): Record<string, string> {
    return {
      FERRY_SWEEP_INTERVAL_SEC: '2',
      FERRY_WORKERS: '1',
      ...this.#o.ferryEnv,
      FERRY_DATA_DIR: this.dataDir,
    }
  }

  async setup(): Promise<void> {
    this.dataDir = mkdtempSync(join(tmpdir(), `ferry-chaos-${this.name}-`))
    if (this.name === 'disk') {
      execFileSync('mount', [
        '-t',
        'tmpfs',
        '-o',
        `size=${this.#o.diskBytes}`,
        'tmpfs',
        this.dataDir,
      ])
      this.#mounted = true
    }
    const env = this.#env
    if (this.name === 'redis') {
      this.redis = await ChaosRedis.start()
      Object.assign(env, { REDIS_URL: this.redis.url, FERRY_REDIS_PREFIX: uniquePrefix() })
    }
    const n = this.name === 'redis' ? 2 : 1
    for (let i = 0; i < n; i++) {
      const inst = new FerryInstance(`${this.name}-${i}`, await freePort(), { ...env })
      this.instances.push(inst)
      await inst.start()
      const prng = this.rng.fork(`proxy-${i}`)
      this.proxies.push(
        await ChaosProxy.start(inst.port, () => proxyAction(prng, this.#o.proxyFaultRate)),
      )
    }
    this.traffic = newTraffic(
      this.proxies.map((p) => p.url),
      this.#o.idleTimeoutMs,
    )
    this.observer = new StoreObserver({
      store: join(this.dataDir, 'store'),
      cas: join(this.dataDir, 'cas'),
      versionsOf: (p) => this.versions.get(p),
      explain: (p, got) => {
        const u = this.#byPath.get(p)
        return u === undefined ? null : describe(got, u.allData)
      },
      intervalMs: 50,
    })
    this.observer.start()
  }

  /** Upload workers: each starts uploads one after another while the faults run. */
  async #uploader(w: number): Promise<void> {
    const rng = this.rng.fork(`uploader-${w}`)
    const maxBytes =
      this.name === 'disk' ? Math.min(this.#o.maxFileBytes, 512 * 1024) : this.#o.maxFileBytes
    while (this.#shared.faultsOn) {
      const n = this.#n++
      const size = rng.int(1, maxBytes)
      let shaman: ShamanUpload | null = null
      try {
        if (this.name !== 'disk' && rng.chance(0.25)) {
          // A quarter of the Shaman uploads send a blob another upload is sending or sent (dedup).
          const earlier = this.shaman.length > 0 && rng.chance(0.25) ? rng.pick(this.shaman) : null
          shaman = newShamanUpload(n, earlier?.data ?? seededBytes(size, `sh-${n}-${rng.next()}`))
          this.shaman.push(shaman)
          await runShamanUpload(shaman, this.traffic, rng)
        } else {
          const path = `chaos/${this.name}/${w}/${n}.bin`
          const versions = new Map<string, number>()
          this.versions.set(path, versions)
          const u = newImageStoreUpload(n, path, size, rng, rng.chance(0.5), versions)
          this.uploads.push(u)
          this.#byPath.set(path, u)
          try {
            await runImageStoreUpload(u, this.traffic, rng)
          } catch (err) {
            u.lost = (err as Error).message
            throw err
          }
          if (this.name === 'disk') await this.#takeAway(u)
        }
      } catch (err) {
        if (!(err instanceof LostUpload))
          this.errors.push(`uploader ${w}: ${(err as Error).stack ?? String(err)}`)
        if (shaman !== null) shaman.lost = (err as Error).message
      }
    }
  }

  /**
   * The small disk would fill with finished uploads: as a consumer would, check each file as
   * soon as it is committed and take it away (the observer has seen it by then or sees it gone).
   */
  async #takeAway(u: ImageStoreUpload): Promise<void> {
    const full = join(this.dataDir, 'store', u.path)
    const want = sha256(u.data)
    const got = await readFile(full).then(sha256, (e: Error) => `unreadable (${e.message})`)
    if (got !== want)
      this.finalWrong.push(
        `store/${u.path} right after its commit: ${got.slice(0, 16)}… instead of ${want.slice(0, 16)}…/${u.data.length}`,
      )
    await unlink(full).catch(() => {})
    u.takenAway = true
  }

  async #restart(inst: FerryInstance): Promise<void> {
    this.#busy.add(inst)
    try {
      this.restartMs.push(await inst.startUntilHealthy(Date.now() + 120_000))
    } catch (err) {
      this.errors.push(`${inst.name} did not come back: ${(err as Error).message}`)
    } finally {
      this.#busy.delete(inst)
    }
  }

  async #killLoop(): Promise<void> {
    const rng = this.rng.fork('kills')
    while (this.#shared.faultsOn) {
      await sleep(between(rng, this.#o.killEveryMs))
      if (!this.#shared.faultsOn) break
      // Half the kills wait (up to 3 s) for a commit in flight and strike it; until one kill of
      // this phase has struck a commit, every kill waits for one (as long as the faults last),
      // so that even a short run proves a kill mid-commit (a CI run once saw none).
      let idx = rng.int(0, this.instances.length - 1)
      const mustHitCommit = !this.kills.some((k) => k.during === 'commit')
      if (mustHitCommit || rng.chance(0.5)) {
        const until = mustHitCommit ? Infinity : Date.now() + 3000
        while (Date.now() < until && this.#shared.faultsOn) {
          const busy = this.traffic.commitsInFlight.findIndex(
            (c, i) => c > 0 && this.instances[i]!.running && !this.#busy.has(this.instances[i]!),
          )
          if (busy >= 0) {
            // The request still has to cross the proxy and reach the commit step: strike at a
            // random point of its first tens of milliseconds, where the commit lease is held.
            await sleep(rng.int(0, 40))
            // Counted as a kill mid-commit only when the commit is still in flight.
            if (this.traffic.commitsInFlight[busy]! > 0 || !mustHitCommit) {
              idx = busy
              break
            }
          }
          await sleep(5)
        }
        if (!this.#shared.faultsOn) break
      }
      const inst = this.instances[idx]!
      if (this.#busy.has(inst) || !inst.running) continue
      const during =
        this.traffic.commitsInFlight[idx]! > 0
          ? 'commit'
          : this.traffic.chunksInFlight[idx]! > 0
            ? 'chunk'
            : 'idle'
      this.#busy.add(inst)
      await inst.kill()
      this.kills.push({ atMs: Date.now(), instance: inst.name, during })
      this.#shared.kills++
      await sleep(rng.int(0, 500))
      await this.#restart(inst)
    }
  }

  async #stallLoop(): Promise<void> {
    const rng = this.rng.fork('stalls')
    let retry = false
    while (this.#shared.faultsOn) {
      // Until this group's first stall, a try that found its instance busy (killed, restarting)
      // comes again soon instead of a whole interval later: on a loaded machine the instances
      // restart slowly, and a short run could otherwise end with no stall at all.
      await sleep(retry ? 250 : between(rng, this.#o.stallEveryMs))
      if (!this.#shared.faultsOn) break
      const inst = rng.pick(this.instances)
      retry = false
      if (this.#busy.has(inst) || !inst.pause()) {
        retry = this.stalls.length === 0
        continue
      }
      const sec = between(rng, this.#o.stallSec)
      const iv: Interval = {
        startMs: Date.now(),
        endMs: 0,
        what: `${inst.name} SIGSTOP ${sec.toFixed(1)} s`,
      }
      this.stalls.push(iv)
      // Cut short when the faults stop, so that the drain starts with every instance running.
      for (const until = Date.now() + sec * 1000; Date.now() < until && this.#shared.faultsOn; )
        await sleep(100)
      inst.resume()
      iv.endMs = Date.now()
    }
  }

  async #redisLoop(): Promise<void> {
    const redis = this.redis
    if (redis === null) return
    const rng = this.rng.fork('redis')
    // Alternate, with appendonly first: a short run with two restarts sees both.
    let persist = true
    while (this.#shared.faultsOn) {
      await sleep(between(rng, this.#o.redisRestartEveryMs))
      if (!this.#shared.faultsOn) break
      const downMs = rng.int(200, 2000)
      const iv: Interval = {
        startMs: Date.now(),
        endMs: 0,
        what: persist ? 'restart with appendonly' : 'restart, data lost',
      }
      this.redisRestarts.push(iv)
      await redis.restart(persist, downMs)
      iv.endMs = Date.now()
      this.#o.log(`[${this.name}] redis ${iv.what} (down ${downMs} ms)`)
      persist = !persist
    }
  }

  async #diskLoop(): Promise<void> {
    const rng = this.rng.fork('disk')
    const filler = join(this.dataDir, 'filler.bin')
    while (this.#shared.faultsOn) {
      await sleep(rng.int(3000, 8000))
      if (!this.#shared.faultsOn) break
      const iv: Interval = { startMs: Date.now(), endMs: 0, what: 'disk full' }
      this.diskFull.push(iv)
      const fh = await open(filler, 'a')
      const block = Buffer.alloc(256 * 1024, 0x5a)
      const top = async () => {
        // Fill to the last byte (smaller writes at the end), and again whenever Ferry frees some.
        for (let size = block.length; size >= 512; ) {
          try {
            await fh.write(block.subarray(0, size))
          } catch {
            size >>= 1
          }
        }
      }
      await top()
      const inst = this.instances[0]!
      let restart: Promise<void> | null = null
      if (rng.chance(0.6) && !this.#busy.has(inst)) {
        // A kill while the disk is full: the restart must come up on a full disk (issue 9 defect
        // 3).
        this.#busy.add(inst)
        const during =
          this.traffic.commitsInFlight[0]! > 0
            ? 'commit'
            : this.traffic.chunksInFlight[0]! > 0
              ? 'chunk'
              : 'idle'
        await inst.kill()
        this.kills.push({ atMs: Date.now(), instance: inst.name, during })
        this.#shared.kills++
        restart = this.#restart(inst)
      }
      const until = Date.now() + this.#o.diskFullSec * 1000
      while (Date.now() < until) {
        await sleep(200)
        await top()
      }
      await fh.close()
      await unlink(filler)
      iv.endMs = Date.now()
      this.#o.log(
        `[${this.name}] disk full for ${((iv.endMs - iv.startMs) / 1000).toFixed(1)} s, freed`,
      )
      await restart
    }
  }

  /** Restarts an instance that died on its own (its crash is already on record). */
  async #supervise(stop: () => boolean): Promise<void> {
    while (!stop()) {
      for (const inst of this.instances) {
        if (!inst.running && !this.#busy.has(inst)) {
          this.#o.log(`[${this.name}] ${inst.name} is down without a kill; restarting`)
          void this.#restart(inst)
        }
      }
      await sleep(250)
    }
  }

  /** Runs uploads and faults until the shared stop, then drains. */
  async run(faultsOver: Promise<void>): Promise<void> {
    const workers = Array.from({ length: this.#o.concurrency[this.name] }, (_, w) =>
      this.#uploader(w),
    )
    const injectors = [this.#killLoop(), this.#stallLoop()]
    if (this.name === 'redis') injectors.push(this.#redisLoop())
    if (this.name === 'disk') injectors.push(this.#diskLoop())
    let supervising = true
    const supervisor = this.#supervise(() => !supervising)
    await faultsOver
    for (const p of this.proxies) p.faulty = false
    this.traffic.deadlineMs = Date.now() + this.#o.drainSec * 1000
    await Promise.all(injectors)
    for (const inst of this.instances) inst.resume()
    await Promise.all(workers)
    supervising = false
    await supervisor
  }

  /** The final look: the observer's last pass, every upload's bytes, leftovers after a sweep. */
  async verify(): Promise<void> {
    for (const inst of this.instances) {
      while (this.#busy.has(inst)) await sleep(100)
      if (!inst.running || !(await healthy(inst.port))) this.unhealthyAtEnd.push(inst.name)
    }
    await this.observer.stop()
    await this.observer.scan()
    for (const u of this.uploads) {
      if (!u.completed || u.takenAway) continue
      const want = sha256(u.data)
      const got = await readFile(join(this.dataDir, 'store', u.path)).then(
        sha256,
        (e: Error) => `unreadable (${e.message})`,
      )
      if (got !== want)
        this.finalWrong.push(
          `store/${u.path}: ${got.slice(0, 16)}… instead of ${want.slice(0, 16)}…/${u.data.length}${await explain(join(this.dataDir, 'store', u.path), u)}`,
        )
    }
    for (const u of this.shaman) {
      if (!u.completed) continue
      const p = join(
        this.dataDir,
        'cas',
        u.sha256.slice(0, 2),
        u.sha256.slice(2),
        `${u.data.length}.blob`,
      )
      const got = await readFile(p).then(sha256, (e: Error) => `unreadable (${e.message})`)
      if (got !== u.sha256)
        this.finalWrong.push(`cas blob ${u.sha256.slice(0, 16)}…: ${got.slice(0, 16)}…`)
    }
    if (this.#o.sweepWaitSec > 0) {
      const tmp = join(this.dataDir, 'tmp')
      const until = Date.now() + this.#o.sweepWaitSec * 1000
      for (;;) {
        this.leftovers = readdirSync(tmp)
        if (this.leftovers.length === 0 || Date.now() > until) break
        await sleep(500)
      }
    }
  }

  async teardown(keepData: boolean): Promise<void> {
    await this.observer?.stop()
    for (const inst of this.instances) await inst.stop()
    for (const p of this.proxies) await p.close()
    await this.redis?.stop()
    if (this.#mounted) {
      if (keepData) {
        // A tmpfs vanishes on unmount: copy it out for inspection first.
        const copy = `${this.dataDir}.kept`
        execFileSync('cp', ['-a', this.dataDir, copy])
        this.#o.log(`[${this.name}] data kept in ${copy}`)
      }
      execFileSync('umount', [this.dataDir])
      rmSync(this.dataDir, { recursive: true, force: true })
    } else if (keepData) this.#o.log(`[${this.name}] data kept in ${this.dataDir}`)
    else rmSync(this.dataDir, { recursive: true, force: true })
  }

  slowCommits(): string[] {
    const inside = (s: number, e: number) => [
      ...this.kills
        .filter((k) => k.atMs >= s && k.atMs <= e)
        .map((k) => `kill of ${k.instance} during ${k.during} at +${k.atMs - s} ms`),
      ...[...this.stalls, ...this.redisRestarts, ...this.diskFull]
        .filter((iv) => iv.startMs <= e && (iv.endMs || e) >= s)
        .map((iv) => `${iv.what} at +${iv.startMs - s} ms`),
    ]
    return this.uploads.flatMap((u) =>
      u.commitWaits
        .filter((w) => w.endMs - w.startMs > 5000)
        .map(
          (w) =>
            `${this.name} ${u.path}: ${w.endMs - w.startMs} ms from ${new Date(w.startMs).toISOString().slice(11, 23)}; inside: ${inside(w.startMs, w.endMs).join('; ') || 'nothing injected'}`,
        ),
    )
  }

  /** Commit waits (first commit request to 200) by what happened inside them. */
  commitWaits(): {
    all: number[]
    afterKill: number[]
    afterStall: number[]
    afterRedis: number[]
  } {
    const overlaps = (ivs: readonly Interval[], s: number, e: number) =>
      ivs.some((iv) => iv.startMs <= e && (iv.endMs === 0 ? Date.now() : iv.endMs) >= s)
    const out = {
      all: [] as number[],
      afterKill: [] as number[],
      afterStall: [] as number[],
      afterRedis: [] as number[],
    }
    for (const u of this.uploads) {
      for (const w of u.commitWaits) {
        const ms = w.endMs - w.startMs
        out.all.push(ms)
        const stall = overlaps(this.stalls, w.startMs, w.endMs)
        const redis =
          overlaps(this.redisRestarts, w.startMs, w.endMs) ||
          overlaps(this.diskFull, w.startMs, w.endMs)
        if (stall) out.afterStall.push(ms)
        if (redis) out.afterRedis.push(ms)
        // A SIGSTOPped lease holder is alive and may keep its lease: only stalls are left out here.
        if (!stall && this.kills.some((k) => k.atMs >= w.startMs && k.atMs <= w.endMs))
          out.afterKill.push(ms)
      }
    }
    return out
  }
}

/**
 * Says which sent versions a wrong file is made of (e.g. the new version, then the old one's
 * tail), and whether it is only a beginning of one version (partial).
 */
export function describe(
  got: Buffer,
  versions: readonly Buffer[],
): { partial: boolean; text: string } {
  const partial = versions.some(
    (d) => got.length < d.length && d.subarray(0, got.length).equals(got),
  )
  const parts: string[] = []
  for (let off = 0; off < got.length; ) {
    let best = { v: -1, len: 0 }
    versions.forEach((d, v) => {
      let len = 0
      while (off + len < got.length && off + len < d.length && got[off + len] === d[off + len])
        len++
      if (len > best.len) best = { v, len }
    })
    if (best.len === 0) {
      // Bytes of no version: zeros (a hole never written) or something else.
      const zero = got[off] === 0
      let len = 1
      while (
        off + len < got.length &&
        (zero ? got[off + len] === 0 : versions.every((d) => got[off + len] !== d[off + len]))
      )
        len++
      parts.push(`bytes ${off}-${off + len - 1} ${zero ? 'zeros' : 'from no version'}`)
      off += len
    } else {
      parts.push(
        `bytes ${off}-${off + best.len - 1} = version ${best.v + 1} (${versions[best.v]!.length} bytes)`,
      )
      off += best.len
    }
    if (parts.length > 8) {
      parts.push('…')
      break
    }
  }
  return { partial, text: `${got.length} bytes: ${parts.join(', ')}` }
}

async function explain(full: string, u: ImageStoreUpload): Promise<string> {
  const got = await readFile(full).catch(() => null)
  return got === null ? '' : ` (${describe(got, u.allData).text})`
}

function proxyAction(rng: Rng, rate: number): ProxyAction {
  if (!rng.chance(rate)) return { kind: 'pass' }
  const r = rng.next()
  const dir = rng.chance(0.75) ? 'up' : 'down'
  // Answers are short (a status line and a few headers): cut them within their first 200 bytes.
  const afterBytes = dir === 'up' ? rng.int(0, 600 * 1024) : rng.int(0, 200)
  if (r < 0.15) return { kind: 'delay', ms: rng.int(50, 1500) }
  if (r < 0.3) return { kind: 'stall', dir, afterBytes, ms: rng.int(500, 4000) }
  if (r < 0.75) return { kind: 'cut', dir, afterBytes }
  return { kind: 'reset', dir, afterBytes }
}

// ---- report ----------------------------------------------------------------------------------

export interface Check {
  readonly name: string
  readonly ok: boolean
  readonly detail: string
}

export interface ChaosReport {
  readonly label: string
  readonly command: string
  readonly seed: number
  readonly startedAt: string
  readonly durationSec: number
  readonly node: string
  readonly options: Omit<ChaosOptions, 'log' | 'resultsDir'>
  readonly totals: {
    kills: number
    killsDuringCommit: number
    killsDuringChunk: number
    stalls: number
    stallSec: number
    proxy: ProxyCounts
    redisRestarts: { withAppendonly: number; dataLost: number }
    diskFull: number
    restartToHealthyMs: { p50: number; max: number; n: number }
    failedStarts: number
    crashes: number
    commitWaitMs: { p50: number; p99: number; max: number; n: number }
    commitWaitAfterKillMs: { p50: number; p99: number; max: number; n: number }
    commitWaitAfterStallMs: { p50: number; p99: number; max: number; n: number }
    commitWaitAfterRedisOrDiskMs: { p50: number; p99: number; max: number; n: number }
    files: {
      okPaths: number
      okStates: number
      wrongSeen: number
      partialSeen: number
      wrongAtEnd: number
    }
    uploads: {
      imagestore: number
      shaman: number
      completed: number
      lost: number
      restartedFromScratch: number
    }
    leftovers: number
    unhealthyAtEnd: number
  }
  readonly phases: Record<string, unknown>
  readonly violations: readonly Violation[]
  readonly lostUploads: readonly string[]
  /** Uploads whose session vanished and that started again from scratch. */
  readonly restartedUploads: readonly string[]
  /** Every commit wait over 5 s: where, how long, and what fell inside it. */
  readonly slowCommits: readonly string[]
  /** The answers of uploads that were restarted, lost or wrong (last 40 each). */
  readonly traces: Record<string, readonly string[]>
  readonly finalWrong: readonly string[]
  readonly crashes: readonly ExitRecord[]
  readonly failedStarts: readonly ExitRecord[]
  readonly leftovers: readonly string[]
  readonly answers: Record<string, number>
  readonly harnessErrors: readonly string[]
  readonly invariants: readonly Check[]
  readonly goals: readonly Check[]
  readonly passed: boolean
  readonly files: { json: string; markdown: string }
}

function stats(xs: readonly number[]) {
  const r = (v: number) => (Number.isNaN(v) ? 0 : Math.round(v))
  return {
    p50: r(percentile(xs, 50)),
    p99: r(percentile(xs, 99)),
    max: r(xs.length ? Math.max(...xs) : 0),
    n: xs.length,
  }
}

export async function runChaos(o: ChaosOptions, command: string): Promise<ChaosReport> {
  if (o.phases.includes('disk') && process.getuid?.() !== 0) {
    throw new Error(
      'the chaos disk phase needs root: it mounts a small tmpfs (mount -t tmpfs -o size=N tmpfs DIR) and fills it. Run as root.',
    )
  }
  const t0 = Date.now()
  const shared = new Shared(o)
  const root = new Rng(o.seed)
  const phases = o.phases.map((name) => new Phase(name, o, shared, root.fork(name)))
  let report: ChaosReport | null = null
  let keep = true
  try {
    for (const p of phases) await p.setup()
    o.log(
      `chaos ${o.label}: seed ${o.seed}, phases ${o.phases.join(', ')}, until ${o.kills} kills or ${o.minutes} min`,
    )
    const faultsOver = (async () => {
      const until = t0 + o.minutes * 60_000
      let lastLog = Date.now()
      while (
        Date.now() < until &&
        !(shared.kills >= o.kills && Date.now() - t0 >= o.minFaultSec * 1000)
      ) {
        await sleep(200)
        if (Date.now() - lastLog > 15_000) {
          lastLog = Date.now()
          const done = phases.reduce(
            (n, p) =>
              n +
              p.uploads.filter((u) => u.completed).length +
              p.shaman.filter((u) => u.completed).length,
            0,
          )
          const bad = phases.reduce((n, p) => n + p.observer.violations.length, 0)
          o.log(
            `  ${((Date.now() - t0) / 1000).toFixed(0)} s: ${shared.kills} kills, ${done} uploads done, ${bad} bad files seen`,
          )
        }
      }
      shared.faultsOn = false
      o.log(
        `faults off after ${((Date.now() - t0) / 1000).toFixed(0)} s and ${shared.kills} kills; draining (up to ${o.drainSec} s)`,
      )
    })()
    await Promise.all(phases.map((p) => p.run(faultsOver)))
    for (const p of phases) await p.verify()
    report = buildReport(o, command, t0, phases, shared)
    keep = !report.passed
  } finally {
    for (const p of phases)
      await p
        .teardown(keep)
        .catch((err: unknown) => o.log(`teardown of ${p.name}: ${(err as Error).message}`))
  }
  writeReport(report)
  o.log(summary(report))
  return report
}

function buildReport(
  o: ChaosOptions,
  command: string,
  t0: number,
  phases: Phase[],
  shared: Shared,
): ChaosReport {
  const all = <T>(f: (p: Phase) => readonly T[]) => phases.flatMap((p) => [...f(p)])
  const kills = all((p) => p.kills)
  const proxy: ProxyCounts = {
    connections: 0,
    passed: 0,
    delayed: 0,
    stalled: 0,
    cut: 0,
    reset: 0,
    refused: 0,
  }
  for (const pr of all((p) => p.proxies))
    for (const k of Object.keys(proxy) as (keyof ProxyCounts)[]) proxy[k] += pr.counts[k]
  const waits = phases.map((p) => p.commitWaits())
  const violations = all((p) =>
    p.observer.violations.map((v) => ({ ...v, path: `${p.name}:${v.root}/${v.path}` })),
  )
  const lost = [
    ...phases.flatMap((p) =>
      p.uploads
        .filter((u) => !u.completed)
        .map((u) => `${p.name} imagestore ${u.path}: ${u.lost ?? 'unfinished'}`),
    ),
    ...phases.flatMap((p) =>
      p.shaman
        .filter((u) => !u.completed)
        .map((u) => `${p.name} shaman ${u.sha256.slice(0, 16)}…: ${u.lost ?? 'unfinished'}`),
    ),
  ]
  const finalWrong = all((p) => p.finalWrong.map((w) => `${p.name} ${w}`))
  const crashes = all((p) => p.instances.flatMap((i) => i.crashes))
  const failedStarts = all((p) => p.instances.flatMap((i) => i.failedStarts))
  const leftovers = all((p) => p.leftovers.map((f) => `${p.name}:tmp/${f}`))
  const unhealthy = all((p) => p.unhealthyAtEnd)
  const answers: Record<string, number> = {}
  for (const p of phases) for (const [k, v] of p.traffic.answers) answers[k] = (answers[k] ?? 0) + v
  const afterKill = stats(waits.flatMap((w) => w.afterKill))
  const wrongSeen = violations.filter((v) => v.kind !== 'partial').length
  const partialSeen = violations.filter((v) => v.kind === 'partial').length
  const completed =
    all((p) => p.uploads).filter((u) => u.completed).length +
    all((p) => p.shaman).filter((u) => u.completed).length
  const harnessErrors = all((p) => p.errors)
  const invariants: Check[] = [
    { name: '0 wrong files ever visible', ok: wrongSeen === 0, detail: `${wrongSeen} seen` },
    { name: '0 partial files ever visible', ok: partialSeen === 0, detail: `${partialSeen} seen` },
    {
      name: 'every upload completed',
      ok: lost.length === 0,
      detail: `${lost.length} lost of ${completed + lost.length}`,
    },
    {
      name: 'every completed upload has its bytes at the end',
      ok: finalWrong.length === 0,
      detail: `${finalWrong.length} wrong`,
    },
    {
      name: 'no process died on its own',
      ok: crashes.length === 0,
      detail: `${crashes.length} crashes`,
    },
    {
      name: 'every restart came up',
      ok: failedStarts.length === 0 && unhealthy.length === 0,
      detail: `${failedStarts.length} failed starts, ${unhealthy.length} unhealthy at the end`,
    },
    {
      name: 'the harness ran cleanly',
      ok: harnessErrors.length === 0,
      detail: `${harnessErrors.length} errors`,
    },
  ]
  if (o.sweepWaitSec > 0 && o.leftoversFail) {
    invariants.push({
      name: `no temp files left ${o.sweepWaitSec} s after the drain`,
      ok: leftovers.length === 0,
      detail: `${leftovers.length} left`,
    })
  }
  const goals: Check[] = [
    { name: `at least ${o.kills} kills`, ok: shared.kills >= o.kills, detail: `${shared.kills}` },
  ]
  if (o.commitWaitLimitMs > 0) {
    goals.push({
      name: `commit wait p99 after a kill <= ${o.commitWaitLimitMs} ms`,
      ok: afterKill.n === 0 || afterKill.p99 <= o.commitWaitLimitMs,
      detail: `p99 ${afterKill.p99} ms, max ${afterKill.max} ms over ${afterKill.n} commits`,
    })
  }
  const stamp = new Date(t0).toISOString().replace(/[:.]/g, '-')
  const stem = join(o.resultsDir, `${o.label}-${stamp}-seed${o.seed}`)
  const { log: _log, resultsDir: _dir, ...options } = o
  const restart = stats(all((p) => p.restartMs))
  return {
    label: o.label,
    command,
    seed: o.seed,
    startedAt: new Date(t0).toISOString(),
    durationSec: Math.round((Date.now() - t0) / 1000),
    node: process.version,
    options,
    totals: {
      kills: kills.length,
      killsDuringCommit: kills.filter((k) => k.during === 'commit').length,
      killsDuringChunk: kills.filter((k) => k.during === 'chunk').length,
      stalls: all((p) => p.stalls).length,
      stallSec: Math.round(
        all((p) => p.stalls).reduce((s, iv) => s + (iv.endMs - iv.startMs) / 1000, 0),
      ),
      proxy,
      redisRestarts: {
        withAppendonly: all((p) => p.redisRestarts).filter((r) => r.what.includes('appendonly'))
          .length,
        dataLost: all((p) => p.redisRestarts).filter((r) => r.what.includes('lost')).length,
      },
      diskFull: all((p) => p.diskFull).length,
      restartToHealthyMs: { p50: restart.p50, max: restart.max, n: restart.n },
      failedStarts: failedStarts.length,
      crashes: crashes.length,
      commitWaitMs: stats(waits.flatMap((w) => w.all)),
      commitWaitAfterKillMs: afterKill,
      commitWaitAfterStallMs: stats(waits.flatMap((w) => w.afterStall)),
      commitWaitAfterRedisOrDiskMs: stats(waits.flatMap((w) => w.afterRedis)),
      files: {
        okPaths: phases.reduce((n, p) => n + p.observer.okPaths.size, 0),
        okStates: phases.reduce((n, p) => n + p.observer.okStates, 0),
        wrongSeen,
        partialSeen,
        wrongAtEnd: finalWrong.length,
      },
      uploads: {
        imagestore: all((p) => p.uploads).length,
        shaman: all((p) => p.shaman).length,
        completed,
        lost: lost.length,
        restartedFromScratch: all((p) => p.uploads).reduce((n, u) => n + u.restarts, 0),
      },
      leftovers: leftovers.length,
      unhealthyAtEnd: unhealthy.length,
    },
    phases: Object.fromEntries(
      phases.map((p) => [
        p.name,
        {
          instances: p.instances.length,
          kills: p.kills.length,
          stalls: p.stalls.map((s) => s.what),
          redisRestarts: p.redisRestarts.map((r) => r.what),
          diskFull: p.diskFull.length,
          uploads: p.uploads.length + p.shaman.length,
          completed:
            p.uploads.filter((u) => u.completed).length +
            p.shaman.filter((u) => u.completed).length,
          commitWaitAfterKillMs: stats(p.commitWaits().afterKill),
          observerScans: p.observer.scans,
        },
      ]),
    ),
    violations,
    lostUploads: lost,
    slowCommits: phases.flatMap((p) => p.slowCommits()),
    traces: Object.fromEntries(
      phases.flatMap((p) =>
        p.uploads
          .filter(
            (u) =>
              u.restarts > 0 ||
              !u.completed ||
              finalWrong.some((w) => w.includes(u.path)) ||
              violations.some((v) => v.path.endsWith(u.path)),
          )
          .map((u) => [`${p.name}:${u.path}`, u.trace]),
      ),
    ),
    restartedUploads: phases.flatMap((p) =>
      p.uploads
        .filter((u) => u.restarts > 0)
        .map(
          (u) =>
            `${p.name} ${u.path}: ${u.restarts} restart(s), ${u.pathKeyed ? 'same session id, new smaller version' : 'new session id'}, ${u.completed ? 'completed' : 'not completed'} (versions ${[...u.versions.values()].join(' > ')} bytes)`,
        ),
    ),
    finalWrong,
    crashes,
    failedStarts,
    leftovers,
    answers: Object.fromEntries(Object.entries(answers).sort()),
    harnessErrors,
    invariants,
    goals,
    passed: invariants.every((c) => c.ok) && goals.every((c) => c.ok),
    files: { json: `${stem}.json`, markdown: `${stem}.md` },
  }
}

function writeReport(r: ChaosReport | null): void {
  if (r === null) return
  mkdirSync(join(r.files.json, '..'), { recursive: true })
  writeFileSync(r.files.json, `${JSON.stringify(r, null, 2)}\n`)
  writeFileSync(r.files.markdown, markdown(r))
}

/**
 * Exits grouped by instance and their first line of output that names an error, with one tail each.
 */
function grouped(xs: readonly ExitRecord[]): string[] {
  const groups = new Map<string, { n: number; rec: ExitRecord }>()
  for (const x of xs) {
    const line =
      x.tail.split('\n').find((l) => /error|fail|ENOSPC|in use/i.test(l)) ??
      x.tail.split('\n')[0] ??
      ''
    const key = `${x.instance} exit ${x.code}: ${line.slice(0, 200)}`
    const g = groups.get(key)
    if (g) g.n++
    else groups.set(key, { n: 1, rec: x })
  }
  return [...groups].map(
    ([key, g]) =>
      `${g.n} × ${key}\n\n\`\`\`\n${g.rec.tail.split('\n').slice(-12).join('\n')}\n\`\`\``,
  )
}

const mark = (c: Check) => `| ${c.ok ? 'ok' : '**FAILED**'} | ${c.name} | ${c.detail} |`

export function markdown(r: ChaosReport): string {
  const t = r.totals
  const w = (x: { p50: number; p99: number; max: number; n: number }) =>
    `p50 ${x.p50} ms, p99 ${x.p99} ms, max ${x.max} ms (n=${x.n})`
  const lines = [
    `# Chaos run ${r.label}, seed ${r.seed}: ${r.passed ? 'passed' : 'FAILED'}`,
    '',
    `\`${r.command}\` — started ${r.startedAt}, ${r.durationSec} s, Node ${r.node}, phases ${r.options.phases.join(', ')}.`,
    '',
    '| | check | measured |',
    '|---|---|---|',
    ...r.invariants.map(mark),
    ...r.goals.map((g) => mark({ ...g, name: `goal: ${g.name}` })),
    '',
    '## Faults',
    `- SIGKILLs: ${t.kills} (${t.killsDuringCommit} during a commit, ${t.killsDuringChunk} during chunks)`,
    `- SIGSTOP stalls: ${t.stalls}, ${t.stallSec} s in all`,
    `- proxy: ${t.proxy.connections} connections, ${t.proxy.cut} cut, ${t.proxy.reset} reset, ${t.proxy.stalled} stalled, ${t.proxy.delayed} delayed, ${t.proxy.refused} refused by a down instance`,
    `- Redis restarts: ${t.redisRestarts.withAppendonly} with appendonly, ${t.redisRestarts.dataLost} with all data lost`,
    `- disk full episodes: ${t.diskFull}`,
    '',
    '## Recovery',
    `- restart to healthy: p50 ${t.restartToHealthyMs.p50} ms, max ${t.restartToHealthyMs.max} ms (n=${t.restartToHealthyMs.n}); failed starts ${t.failedStarts}; crashes ${t.crashes}`,
    `- commit wait (first commit request to 200), all: ${w(t.commitWaitMs)}`,
    `- commit wait when a kill fell inside it (and no stall): ${w(t.commitWaitAfterKillMs)}`,
    `- commit wait across a SIGSTOP stall: ${w(t.commitWaitAfterStallMs)}`,
    `- commit wait across a Redis restart or full disk: ${w(t.commitWaitAfterRedisOrDiskMs)}`,
    '',
    '## Files and uploads',
    `- observer: ${t.files.okPaths} paths seen right (${t.files.okStates} file states hashed), ${t.files.wrongSeen} wrong and ${t.files.partialSeen} partial seen, ${t.files.wrongAtEnd} wrong at the end`,
    `- uploads: ${t.uploads.imagestore} ImageStore + ${t.uploads.shaman} Shaman, ${t.uploads.completed} completed, ${t.uploads.lost} lost, ${t.uploads.restartedFromScratch} restarted from scratch (session lost)`,
    `- temp files left after the sweep wait: ${t.leftovers}; instances unhealthy at the end: ${t.unhealthyAtEnd}`,
  ]
  const list = (title: string, xs: readonly string[]) =>
    xs.length
      ? [
          '',
          `## ${title}`,
          ...xs.slice(0, 30).map((x) => `- ${x}`),
          ...(xs.length > 30 ? [`- … ${xs.length - 30} more`] : []),
        ]
      : []
  lines.push(
    ...list(
      'Wrong or partial files seen',
      r.violations.map(
        (v) =>
          `${v.kind}: ${v.path} (${v.bytes} bytes, sha256 ${v.sha256.slice(0, 16)}…; expected ${v.expected}) at ${new Date(v.atMs).toISOString()}`,
      ),
    ),
    ...list('Lost uploads', r.lostUploads),
    ...list('Uploads restarted from scratch (their session vanished)', r.restartedUploads),
    ...list('Wrong at the end', r.finalWrong),
    ...list('Commits that waited over 5 s', r.slowCommits),
    ...list('Crashes', grouped(r.crashes)),
    ...list('Failed starts', grouped(r.failedStarts)),
    ...list('Leftovers', r.leftovers),
    ...list('Harness errors', r.harnessErrors),
    '',
    '## Answers seen by the clients',
    '',
    ...Object.entries(r.answers).map(([k, v]) => `- ${k}: ${v}`),
    '',
  )
  return lines.join('\n')
}

export function summary(r: ChaosReport): string {
  const t = r.totals
  return [
    `chaos ${r.label} seed ${r.seed}: ${r.passed ? 'PASSED' : 'FAILED'} in ${r.durationSec} s`,
    `  kills ${t.kills} (${t.killsDuringCommit} mid-commit), stalls ${t.stalls} (${t.stallSec} s), cuts ${t.proxy.cut + t.proxy.reset}, redis restarts ${t.redisRestarts.withAppendonly}+${t.redisRestarts.dataLost} lost, disk full ${t.diskFull}`,
    `  restart to healthy p50 ${t.restartToHealthyMs.p50} ms max ${t.restartToHealthyMs.max} ms; commit wait after kill p50 ${t.commitWaitAfterKillMs.p50} p99 ${t.commitWaitAfterKillMs.p99} max ${t.commitWaitAfterKillMs.max} ms (n=${t.commitWaitAfterKillMs.n})`,
    `  files ok ${t.files.okPaths}, wrong seen ${t.files.wrongSeen}, partial seen ${t.files.partialSeen}, wrong at end ${t.files.wrongAtEnd}; uploads ${t.uploads.completed} done, ${t.uploads.lost} lost; leftovers ${t.leftovers}; crashes ${t.crashes}, failed starts ${t.failedStarts}`,
    ...[...r.invariants, ...r.goals]
      .filter((c) => !c.ok)
      .map((c) => `  FAILED: ${c.name}: ${c.detail}`),
    `  report: ${r.files.markdown}`,
  ].join('\n')
}
