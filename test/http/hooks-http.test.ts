import { afterEach, describe, expect, test } from '@jest/globals'
import { createServer, type IncomingHttpHeaders, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import {
  createHttpHooks,
  type HookUpload,
  type HttpHooks,
} from '../../src/core/hooks/http-hooks.js'

interface Received {
  headers: IncomingHttpHeaders
  body: Record<string, unknown>
}

type Behaviour = (res: ServerResponse, n: number, got: Received) => void | Promise<void>

/** A real hook receiver on 127.0.0.1 whose answer each test scripts. */
class HookServer {
  readonly received: Received[] = []
  behaviour: Behaviour = (res) => {
    res.writeHead(200).end()
  }
  #server: Server
  #waiters: Array<{ n: number; resolve: () => void }> = []
  port = 0

  constructor() {
    this.#server = createServer((req, res) => {
      const parts: Buffer[] = []
      req.on('data', (d: Buffer) => parts.push(d))
      req.on('end', () => {
        const got = { headers: req.headers, body: JSON.parse(Buffer.concat(parts).toString()) }
        this.received.push(got)
        for (const w of this.#waiters.filter((x) => this.received.length >= x.n)) w.resolve()
        void this.behaviour(res, this.received.length, got)
      })
    })
  }

  async listen(): Promise<this> {
    await new Promise<void>((resolve) => this.#server.listen(0, '127.0.0.1', resolve))
    this.port = (this.#server.address() as AddressInfo).port
    return this
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}/hooks`
  }

  /** Resolves once `n` requests have arrived. */
  until(n: number): Promise<void> {
    if (this.received.length >= n) return Promise.resolve()
    return new Promise((resolve) => this.#waiters.push({ n, resolve }))
  }

  async close(): Promise<void> {
    this.#server.closeAllConnections()
    await new Promise<void>((resolve) => this.#server.close(() => resolve()))
  }
}

/** A gate a test opens by hand: ordering without sleeps. */
function gate(): { wait: Promise<void>; open: () => void } {
  let open!: () => void
  const wait = new Promise<void>((resolve) => (open = resolve))
  return { wait, open }
}

const upload = (id = 'u1'): HookUpload => ({
  id,
  family: 'tus',
  size: 11,
  sha256: 'b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9',
  metadata: { filename: 'hello.txt' },
})

let servers: HookServer[] = []
let hooks: HttpHooks[] = []

async function start(): Promise<HookServer> {
  const s = await new HookServer().listen()
  servers.push(s)
  return s
}

function make(opts: Parameters<typeof createHttpHooks>[0]): HttpHooks {
  const h = createHttpHooks({ random: () => 0.5, ...opts })
  hooks.push(h)
  return h
}

afterEach(async () => {
  for (const h of hooks) await h.close({ timeoutMs: 50 })
  for (const s of servers) await s.close()
  hooks = []
  servers = []
})

describe('post-* events', () => {
  test('post-finish is a JSON POST: event, id, family, size, sha256, metadata, time', async () => {
    const s = await start()
    const h = make({ url: s.url })
    const before = Date.now()
    expect(h.notify('post-finish', upload())).toBe(true)
    await s.until(1)
    const { headers, body } = s.received[0]!
    expect(headers['content-type']).toBe('application/json')
    expect(headers['ferry-hook-event']).toBe('post-finish')
    expect(headers['ferry-hook-delivery']).toBe(body['deliveryId'])
    expect(body).toMatchObject({ event: 'post-finish', upload: upload() })
    expect(Date.parse(body['time'] as string)).toBeGreaterThanOrEqual(before - 1000)
    await h.close()
    expect(h.stats).toMatchObject({ delivered: 1, failed: 0, dropped: 0, abandoned: 0 })
  })

  test('post-terminate too; a slow hook does not delay notify', async () => {
    const s = await start()
    const g = gate()
    s.behaviour = async (res) => {
      await g.wait
      res.writeHead(204).end()
    }
    const h = make({ url: s.url })
    const t0 = performance.now()
    expect(h.notify('post-terminate', upload('gone'))).toBe(true)
    expect(performance.now() - t0).toBeLessThan(20)
    await s.until(1)
    expect(h.stats.inFlight).toBe(1)
    g.open()
    await h.close()
    expect(s.received[0]!.body['event']).toBe('post-terminate')
    expect(h.stats.delivered).toBe(1)
  })

  test('failures are retried with backoff until a 2xx, with the same delivery id', async () => {
    const s = await start()
    s.behaviour = (res, n) => {
      if (n <= 3) res.writeHead(n === 2 ? 429 : 503).end('busy')
      else res.writeHead(200).end()
    }
    const h = make({ url: s.url, backoffBaseMs: 20 })
    const t0 = performance.now()
    h.notify('post-finish', upload())
    await s.until(4)
    const elapsed = performance.now() - t0
    // Delays 20, 40, 80 ms (random() = 0.5 gives no jitter): at least 140 ms in all.
    expect(elapsed).toBeGreaterThanOrEqual(130)
    const ids = new Set(s.received.map((r) => r.body['deliveryId']))
    expect(ids.size).toBe(1)
    await h.close()
    expect(h.stats).toMatchObject({ delivered: 1, failed: 0 })
  })

  test('a deliberate 4xx is not retried and counts as failed', async () => {
    const s = await start()
    s.behaviour = (res) => {
      res.writeHead(422).end('bad event')
    }
    const h = make({ url: s.url, backoffBaseMs: 5 })
    h.notify('post-finish', upload())
    await h.close()
    expect(s.received).toHaveLength(1)
    expect(h.stats).toMatchObject({ delivered: 0, failed: 1 })
  })

  test('maxAttempts bounds the retries', async () => {
    const s = await start()
    s.behaviour = (res) => {
      res.writeHead(500).end()
    }
    const h = make({ url: s.url, backoffBaseMs: 5, maxAttempts: 3 })
    h.notify('post-finish', upload())
    await s.until(3)
    await h.close()
    expect(s.received).toHaveLength(3)
    expect(h.stats).toMatchObject({ delivered: 0, failed: 1 })
  })

  test('the queue is bounded: beyond queueLimit notify drops, counts and logs', async () => {
    const s = await start()
    const g = gate()
    s.behaviour = async (res) => {
      await g.wait
      res.writeHead(200).end()
    }
    const logged: string[] = []
    const push = (_o: object, m: string): void => {
      logged.push(m)
    }
    const logger = { warn: push, error: push }
    const h = make({ url: s.url, queueLimit: 3, concurrency: 1, logger })
    const accepted = [1, 2, 3].map((i) => h.notify('post-finish', upload(`q${i}`)))
    expect(accepted).toEqual([true, true, true])
    expect(h.notify('post-finish', upload('q4'))).toBe(false)
    expect(h.stats).toMatchObject({ queued: 2, inFlight: 1, dropped: 1 })
    expect(logged).toContain('hook event dropped')
    g.open()
    await h.close()
    expect(s.received.map((r) => (r.body['upload'] as HookUpload).id)).toEqual(['q1', 'q2', 'q3'])
    expect(h.stats).toMatchObject({ delivered: 3, dropped: 1, abandoned: 0 })
  })

  test('a hook that never answers: each attempt times out and is retried', async () => {
    const s = await start()
    s.behaviour = (res, n) => {
      if (n >= 3) res.writeHead(200).end()
      // else: never answer
    }
    const h = make({ url: s.url, attemptTimeoutMs: 100, backoffBaseMs: 5 })
    const t0 = performance.now()
    h.notify('post-finish', upload())
    await s.until(3)
    expect(performance.now() - t0).toBeGreaterThanOrEqual(190)
    await h.close()
    expect(h.stats.delivered).toBe(1)
  })
})

describe('close()', () => {
  test('drains: events queued behind a slow hook are delivered before close resolves', async () => {
    const s = await start()
    s.behaviour = async (res) => {
      await new Promise((r) => setImmediate(r))
      res.writeHead(200).end()
    }
    const h = make({ url: s.url, concurrency: 1 })
    for (let i = 0; i < 10; i++) h.notify('post-finish', upload(`d${i}`))
    const r = await h.close({ timeoutMs: 10_000 })
    expect(r.abandoned).toBe(0)
    expect(s.received).toHaveLength(10)
    expect(h.stats).toMatchObject({ delivered: 10, queued: 0, inFlight: 0 })
    expect(h.notify('post-finish', upload('late'))).toBe(false)
  })

  test('a retry sleeping a long backoff is woken to try again at close', async () => {
    const s = await start()
    s.behaviour = (res, n) => {
      res.writeHead(n === 1 ? 500 : 200).end()
    }
    const h = make({ url: s.url, backoffBaseMs: 60_000 })
    h.notify('post-finish', upload())
    await s.until(1)
    const t0 = performance.now()
    const r = await h.close({ timeoutMs: 5000 })
    expect(performance.now() - t0).toBeLessThan(2000)
    expect(r.abandoned).toBe(0)
    expect(h.stats.delivered).toBe(1)
  })

  test('gives up at its deadline: pending events are aborted and reported abandoned', async () => {
    const s = await start()
    s.behaviour = () => {
      // never answers
    }
    const h = make({ url: s.url, concurrency: 1, attemptTimeoutMs: 60_000 })
    h.notify('post-finish', upload('a'))
    h.notify('post-finish', upload('b'))
    await s.until(1)
    const t0 = performance.now()
    const r = await h.close({ timeoutMs: 100 })
    expect(performance.now() - t0).toBeLessThan(2000)
    expect(r.abandoned).toBe(2)
    expect(h.stats).toMatchObject({ delivered: 0, abandoned: 2, queued: 0, inFlight: 0 })
  })
})

describe('pre-create', () => {
  test('2xx allows and the hook sees the upload', async () => {
    const s = await start()
    const h = make({ url: s.url })
    expect(await h.preCreate(upload('new'))).toEqual({ allow: true, degraded: false })
    expect(s.received[0]!.body).toMatchObject({
      event: 'pre-create',
      upload: { id: 'new', family: 'tus' },
    })
    expect(s.received[0]!.headers['ferry-hook-event']).toBe('pre-create')
  })

  test('a 4xx answer rejects with its status and JSON message', async () => {
    const s = await start()
    s.behaviour = (res) => {
      res.writeHead(403, { 'Content-Type': 'application/json' })
      res.end(JSON.stringify({ message: 'quota exceeded' }))
    }
    const h = make({ url: s.url })
    expect(await h.preCreate(upload())).toEqual({
      allow: false,
      status: 403,
      message: 'quota exceeded',
      reason: 'rejected',
    })
    expect(s.received).toHaveLength(1)
  })

  test('a 4xx with a text body: the text (control characters removed) is the message', async () => {
    const s = await start()
    s.behaviour = (res) => {
      res.writeHead(413).end('file too big\r\nfor you')
    }
    const h = make({ url: s.url })
    expect(await h.preCreate(upload())).toMatchObject({
      allow: false,
      status: 413,
      message: 'file too big for you',
    })
  })

  test('2xx with {"reject": true} rejects; a status outside 4xx becomes 403', async () => {
    const s = await start()
    s.behaviour = (res, n) => {
      const body =
        n === 1 ? { reject: true, status: 451, message: 'not here' } : { reject: true, status: 500 }
      res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify(body))
    }
    const h = make({ url: s.url })
    const first = await h.preCreate(upload())
    expect(first).toMatchObject({ allow: false, status: 451, message: 'not here' })
    expect(await h.preCreate(upload())).toMatchObject({
      allow: false,
      status: 403,
      message: 'upload rejected by hook',
    })
  })

  test('5xx then 2xx: retried within preCreateAttempts and allowed', async () => {
    const s = await start()
    s.behaviour = (res, n) => {
      res.writeHead(n === 1 ? 502 : 200).end()
    }
    const h = make({ url: s.url, backoffBaseMs: 5 })
    expect(await h.preCreate(upload())).toEqual({ allow: true, degraded: false })
    expect(s.received).toHaveLength(2)
  })

  test('timeout → 503 by default, after preCreateAttempts tries of attemptTimeoutMs', async () => {
    const s = await start()
    s.behaviour = () => {
      // never answers
    }
    const h = make({ url: s.url, attemptTimeoutMs: 100, preCreateAttempts: 2, backoffBaseMs: 5 })
    const t0 = performance.now()
    const d = await h.preCreate(upload())
    const elapsed = performance.now() - t0
    expect(d).toEqual({
      allow: false,
      status: 503,
      message: 'upload hook unavailable, try again later',
      reason: 'unavailable',
    })
    expect(s.received).toHaveLength(2)
    expect(elapsed).toBeGreaterThanOrEqual(190)
    expect(elapsed).toBeLessThan(3000)
  })

  test("unreachable hook → 503, or allowed (degraded) with 'allow'", async () => {
    const s = await start()
    const deadUrl = s.url
    await s.close()
    servers = servers.filter((x) => x !== s)
    const strict = make({ url: deadUrl, backoffBaseMs: 5 })
    expect(await strict.preCreate(upload())).toMatchObject({
      allow: false,
      status: 503,
      reason: 'unavailable',
    })
    const lenient = make({ url: deadUrl, backoffBaseMs: 5, onPreCreateUnavailable: 'allow' })
    expect(await lenient.preCreate(upload())).toEqual({ allow: true, degraded: true })
  })

  test("the client's abort signal ends the hook call early", async () => {
    const s = await start()
    s.behaviour = () => {
      // never answers
    }
    const h = make({ url: s.url, attemptTimeoutMs: 60_000 })
    const ac = new AbortController()
    const p = h.preCreate(upload(), ac.signal)
    await s.until(1)
    ac.abort()
    const t0 = performance.now()
    expect(await p).toMatchObject({ allow: false, reason: 'unavailable' })
    expect(performance.now() - t0).toBeLessThan(2000)
    expect(s.received).toHaveLength(1)
  })

  test('credentials in the URL become Basic Authorization and are never logged', async () => {
    const s = await start()
    const logged: object[] = []
    const logger = { warn: (o: object) => logged.push(o), error: (o: object) => logged.push(o) }
    s.behaviour = (res, n) => {
      res.writeHead(n === 1 ? 500 : 200).end()
    }
    const h = make({
      url: `http://hook:s3cret@127.0.0.1:${s.port}/hooks`,
      logger,
      backoffBaseMs: 5,
      preCreateAttempts: 1,
    })
    await h.preCreate(upload())
    const basic = `Basic ${Buffer.from('hook:s3cret').toString('base64')}`
    expect(s.received[0]!.headers['authorization']).toBe(basic)
    expect(JSON.stringify(logged)).not.toContain('s3cret')
    expect(JSON.stringify(logged)).toContain('127.0.0.1')
  })
})

describe('options', () => {
  test('bad options fail fast with the option name', () => {
    expect(() => createHttpHooks({ url: 'ftp://x/' })).toThrow(/http or https/)
    expect(() => createHttpHooks({ url: 'http://x/', queueLimit: 0 })).toThrow(/queueLimit/)
    const fractional = { url: 'http://x/', attemptTimeoutMs: 1.5 }
    expect(() => createHttpHooks(fractional)).toThrow(/attemptTimeoutMs/)
    const unbounded = { url: 'http://x/', concurrency: Infinity }
    expect(() => createHttpHooks(unbounded)).toThrow(/concurrency/)
    expect(() => createHttpHooks({ url: 'http://x/', maxAttempts: 0 })).toThrow(/maxAttempts/)
    expect(() => createHttpHooks({ url: 'not a url' })).toThrow()
  })
})
