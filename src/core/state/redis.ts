/**
 * The Redis state backend (ioredis). A session is one hash `{v, doc}`: the record as JSON and a
 * version. Every change runs the shared pure transition (session-logic.ts) on a snapshot and
 * writes it back with one Lua compare-and-set on the version, retried on conflict, so two
 * instances changing one session at once never lose each other's update. An index zset
 * (updatedAt) feeds the sweeper and a set per target answers look-ups by path.
 */
import { randomUUID } from 'node:crypto'
import { Redis } from 'ioredis'
import { maskUrl } from '../../observability/redact.js'
import { RenewingLock } from './lock-handle.js'
import {
  abortCommitStep, beginCommitStep, renewCommitStep, completeStep, finishCommitStep, openStep, parseRecord, releaseStep,
  removeIfExpiredStep, removeStep, renewStep, reserveStep, type Step,
} from './session-logic.js'
import type { Bus, Lock, Locker, SessionRecord, SessionStore, StateBackend } from './types.js'

const CAS = `
local cur = redis.call('HGET', KEYS[1], 'v')
if (cur or '') ~= ARGV[1] then return 0 end
if ARGV[2] == '' then
  redis.call('DEL', KEYS[1])
  redis.call('ZREM', KEYS[2], ARGV[3])
  redis.call('SREM', KEYS[3], ARGV[3])
else
  redis.call('HSET', KEYS[1], 'v', tostring((tonumber(cur) or 0) + 1), 'doc', ARGV[2])
  redis.call('ZADD', KEYS[2], ARGV[4], ARGV[3])
  redis.call('SADD', KEYS[3], ARGV[3])
end
return 1`

const EXTEND = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0`

const DROP = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`

type Commands = Redis & {
  ferryCas(k1: string, k2: string, k3: string, expect: string, doc: string, key: string, score: number): Promise<number>
  ferryExtend(k: string, token: string, ttlMs: number): Promise<number>
  ferryDrop(k: string, token: string): Promise<number>
}

export function defineCommands(redis: Redis): Commands {
  redis.defineCommand('ferryCas', { numberOfKeys: 3, lua: CAS })
  redis.defineCommand('ferryExtend', { numberOfKeys: 1, lua: EXTEND })
  redis.defineCommand('ferryDrop', { numberOfKeys: 1, lua: DROP })
  return redis as Commands
}

/** Connects and waits until Redis answers, or throws after `timeoutMs`. */
export async function connectRedis(url: string, timeoutMs = 10_000): Promise<Redis> {
  const redis = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 20, enableAutoPipelining: true })
  redis.on('error', () => {
    /* reconnects on its own; commands wait in the offline queue meanwhile */
  })
  let timer: NodeJS.Timeout | undefined
  try {
    await Promise.race([
      redis.connect(),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`Redis at ${maskUrl(url)} did not answer in ${timeoutMs} ms`)), timeoutMs)
      }),
    ])
  } catch (err) {
    redis.disconnect()
    throw err
  } finally {
    clearTimeout(timer)
  }
  return redis
}

export class RedisSessionStore implements SessionStore {
  readonly #r: Commands
  readonly #p: string

  constructor(redis: Redis, prefix: string) {
    this.#r = defineCommands(redis)
    this.#p = prefix
  }

  #k = (key: string) => `${this.#p}sess:${key}`
  #byUpdated = () => `${this.#p}sess-by-updated`
  #byTarget = (target: string) => `${this.#p}sess-by-target:${target}`

  async #read(key: string): Promise<{ v: string; rec: SessionRecord | null }> {
    const [v, doc] = await this.#r.hmget(this.#k(key), 'v', 'doc')
    return { v: v ?? '', rec: doc ? parseRecord(doc) : null }
  }

  async #apply<T>(key: string, step: (cur: SessionRecord | null) => Step<T>): Promise<T> {
    for (let attempt = 0; attempt < 100; attempt++) {
      const { v, rec } = await this.#read(key)
      const { next, out } = step(rec)
      if (next === 'same') return out
      const target = next?.target ?? rec?.target ?? ''
      const ok = await this.#r.ferryCas(
        this.#k(key), this.#byUpdated(), this.#byTarget(target),
        v, next === null ? '' : JSON.stringify(next), key, next?.updatedAtMs ?? 0,
      )
      if (ok === 1) return out
      // Lost a race with another writer of this session: read again and re-decide.
      if (attempt > 3) await new Promise((r) => setTimeout(r, Math.random() * 5 * attempt))
    }
    throw new Error(`session ${key}: too much contention`)
  }

  open(init: Parameters<SessionStore['open']>[0], nowMs: number) {
    return this.#apply(init.key, (c) => openStep(c, init, nowMs))
  }
  async get(key: string) {
    return (await this.#read(key)).rec
  }
  reserve(key: string, range: Parameters<SessionStore['reserve']>[1], token: string, nowMs: number, leaseMs: number) {
    return this.#apply(key, (c) => reserveStep(c, range, token, nowMs, leaseMs))
  }
  renew(key: string, token: string, nowMs: number, leaseMs: number) {
    return this.#apply(key, (c) => renewStep(c, token, nowMs, leaseMs))
  }
  complete(key: string, token: string, nowMs: number) {
    return this.#apply(key, (c) => completeStep(c, token, nowMs))
  }
  release(key: string, token: string) {
    return this.#apply(key, (c) => releaseStep(c, token))
  }
  beginCommit(key: string, owner: string, nowMs: number, leaseMs: number) {
    return this.#apply(key, (c) => beginCommitStep(c, owner, nowMs, leaseMs))
  }
  renewCommit(key: string, owner: string, nowMs: number, leaseMs: number) {
    return this.#apply(key, (c) => renewCommitStep(c, owner, nowMs, leaseMs))
  }
  finishCommit(key: string, owner: string, result: string, nowMs: number) {
    return this.#apply(key, (c) => finishCommitStep(c, owner, result, nowMs))
  }
  abortCommit(key: string, owner: string) {
    return this.#apply(key, (c) => abortCommitStep(c, owner))
  }
  remove(key: string) {
    return this.#apply(key, (c) => removeStep(c))
  }
  async listByTarget(keyPrefix: string, target: string) {
    const keys = (await this.#r.smembers(this.#byTarget(target))).filter((k) => k.startsWith(keyPrefix))
    const recs = await Promise.all(keys.map((k) => this.get(k)))
    return recs.filter((r): r is SessionRecord => r !== null && r.target === target)
  }
  async listExpired(nowMs: number, ttlMs: number, limit: number) {
    return this.#r.zrangebyscore(this.#byUpdated(), '-inf', nowMs - ttlMs, 'LIMIT', 0, limit)
  }
  removeIfExpired(key: string, nowMs: number, ttlMs: number) {
    return this.#apply(key, (c) => removeIfExpiredStep(c, nowMs, ttlMs))
  }
  async close() {}
}

export class RedisLocker implements Locker {
  readonly #r: Commands
  readonly #p: string

  constructor(redis: Redis, prefix: string) {
    this.#r = defineCommands(redis)
    this.#p = prefix
  }

  async tryAcquire(key: string, ttlMs: number): Promise<Lock | null> {
    const token = randomUUID()
    const full = `${this.#p}lock:${key}`
    const ok = await this.#r.set(full, token, 'PX', ttlMs, 'NX')
    if (ok !== 'OK') return null
    return new RenewingLock(key, token, ttlMs, {
      extend: async (_k, t, ms) => (await this.#r.ferryExtend(full, t, ms)) === 1,
      drop: async (_k, t) => {
        await this.#r.ferryDrop(full, t)
      },
    })
  }

  async isHeld(key: string) {
    return (await this.#r.exists(`${this.#p}lock:${key}`)) === 1
  }

  async close() {}
}

export class RedisBus implements Bus {
  readonly #pub: Redis
  readonly #sub: Redis
  readonly #p: string
  readonly #handlers = new Map<string, Set<(m: string) => void>>()

  constructor(pub: Redis, sub: Redis, prefix: string) {
    this.#pub = pub
    this.#sub = sub
    this.#p = prefix
    sub.on('message', (channel: string, message: string) => {
      for (const h of this.#handlers.get(channel) ?? []) h(message)
    })
  }

  async publish(channel: string, message: string) {
    await this.#pub.publish(`${this.#p}${channel}`, message)
  }

  async subscribe(channel: string, handler: (message: string) => void) {
    const full = `${this.#p}${channel}`
    let set = this.#handlers.get(full)
    if (set === undefined) {
      set = new Set()
      this.#handlers.set(full, set)
      await this.#sub.subscribe(full)
    }
    set.add(handler)
    return async () => {
      set.delete(handler)
      if (set.size === 0 && this.#handlers.get(full) === set) {
        this.#handlers.delete(full)
        await this.#sub.unsubscribe(full)
      }
    }
  }

  async close() {
    this.#handlers.clear()
  }
}

export async function createRedisState(url: string, prefix: string): Promise<StateBackend & { redis: Redis }> {
  const redis = await connectRedis(url)
  const sub = redis.duplicate()
  sub.on('error', () => {})
  await sub.ping()
  const sessions = new RedisSessionStore(redis, prefix)
  const locker = new RedisLocker(redis, prefix)
  const bus = new RedisBus(redis, sub, prefix)
  return {
    kind: 'redis',
    redis,
    sessions,
    locker,
    bus,
    async close() {
      await bus.close()
      sub.disconnect()
      await redis.quit().catch(() => redis.disconnect())
    },
  }
}
