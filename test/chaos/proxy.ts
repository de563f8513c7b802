/**
 * A TCP proxy that misbehaves on purpose, between the chaos uploaders and one Ferry instance
 * (tusd's e2e runs toxiproxy for the same reason). Each accepted connection gets one action:
 *
 *   client ──► proxy ──► Ferry          pass   forward both ways
 *                                       delay  hold the first bytes for `ms`, then forward
 *                                       stall  forward `afterBytes` in `dir`, then nothing either
 *                                              way for `ms`, then go on
 *                                       cut    forward `afterBytes` in `dir`, then close both (FIN)
 *                                       reset  forward `afterBytes` in `dir`, then RST both
 *
 * `dir` 'up' counts request bytes (a body cut mid-chunk), 'down' counts answer bytes (the request
 * was served, the client never hears the answer: the case a resuming client must ask about).
 * A connection the instance refuses (killed, restarting) is closed at once.
 */
import { connect, createServer, type Server, type Socket } from 'node:net'

export type ProxyAction =
  | { readonly kind: 'pass' }
  | { readonly kind: 'delay'; readonly ms: number }
  | {
      readonly kind: 'stall'
      readonly dir: 'up' | 'down'
      readonly afterBytes: number
      readonly ms: number
    }
  | { readonly kind: 'cut' | 'reset'; readonly dir: 'up' | 'down'; readonly afterBytes: number }

export interface ProxyCounts {
  connections: number
  passed: number
  delayed: number
  /** Stalls that fired (their byte count was reached). */
  stalled: number
  /** Cuts (FIN) that fired. */
  cut: number
  /** Resets (RST) that fired. */
  reset: number
  /** Connections closed because the instance did not accept. */
  refused: number
}

export class ChaosProxy {
  readonly #server: Server
  readonly #targetPort: number
  readonly #decide: () => ProxyAction
  readonly #sockets = new Set<Socket>()
  readonly counts: ProxyCounts = {
    connections: 0,
    passed: 0,
    delayed: 0,
    stalled: 0,
    cut: 0,
    reset: 0,
    refused: 0,
  }
  /** Off: every connection passes (the drain phase at the end of a run). */
  faulty = true

  private constructor(server: Server, targetPort: number, decide: () => ProxyAction) {
    this.#server = server
    this.#targetPort = targetPort
    this.#decide = decide
    server.on('connection', (c) => this.#accept(c))
  }

  static start(targetPort: number, decide: () => ProxyAction): Promise<ChaosProxy> {
    const server = createServer({ pauseOnConnect: true })
    const proxy = new ChaosProxy(server, targetPort, decide)
    return new Promise((resolve, reject) => {
      server.once('error', reject)
      server.listen(0, '127.0.0.1', () => resolve(proxy))
    })
  }

  get port(): number {
    return (this.#server.address() as { port: number }).port
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`
  }

  #accept(client: Socket): void {
    this.counts.connections++
    const action: ProxyAction = this.faulty ? this.#decide() : { kind: 'pass' }
    const up = connect(this.#targetPort, '127.0.0.1')
    this.#sockets.add(client).add(up)
    let done = false
    const finish = (how: 'close' | 'reset') => {
      if (done) return
      done = true
      for (const s of [client, up]) {
        if (
          how === 'reset' &&
          !s.destroyed &&
          typeof s.resetAndDestroy === 'function' &&
          s.readyState !== 'opening'
        )
          s.resetAndDestroy()
        else s.destroy()
        this.#sockets.delete(s)
      }
    }
    client.on('error', () => finish('close'))
    up.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'ECONNREFUSED') this.counts.refused++
      finish('close')
    })
    client.on('close', () => finish('close'))
    up.on('close', () => finish('close'))
    client.on('end', () => up.end())
    up.on('end', () => client.end())

    let held = false
    const sent = { up: 0, down: 0 }
    const fired = { v: false }
    const forward = (from: Socket, to: Socket, dir: 'up' | 'down') => {
      from.on('data', (d: Buffer) => {
        // After a cut or reset has fired, nothing more may pass: bytes read before the sockets
        // close would reach the far side after a gap, a splice no real network makes.
        if (done || (fired.v && (action.kind === 'cut' || action.kind === 'reset'))) return
        let chunk = d
        if (
          action.kind !== 'pass' &&
          action.kind !== 'delay' &&
          action.dir === dir &&
          !fired.v &&
          sent[dir] + d.length >= action.afterBytes
        ) {
          fired.v = true
          const keep = Math.max(0, action.afterBytes - sent[dir])
          const head = d.subarray(0, keep)
          if (head.length > 0) to.write(head)
          sent[dir] += head.length
          if (action.kind === 'cut' || action.kind === 'reset') {
            this.counts[action.kind === 'cut' ? 'cut' : 'reset']++
            // Let the head reach the far side before the connection goes.
            setImmediate(() => finish(action.kind === 'cut' ? 'close' : 'reset'))
            return
          }
          const stallMs = action.kind === 'stall' ? action.ms : 0
          this.counts.stalled++
          held = true
          client.pause()
          up.pause()
          chunk = d.subarray(keep)
          setTimeout(() => {
            held = false
            if (done) return
            if (chunk.length > 0) to.write(chunk)
            sent[dir] += chunk.length
            client.resume()
            up.resume()
          }, stallMs).unref()
          return
        }
        sent[dir] += chunk.length
        if (!to.write(chunk)) {
          from.pause()
          to.once('drain', () => {
            if (!held) from.resume()
          })
        }
      })
    }
    up.once('connect', () => {
      forward(client, up, 'up')
      forward(up, client, 'down')
      if (action.kind === 'pass') this.counts.passed++
      if (action.kind === 'delay') {
        this.counts.delayed++
        setTimeout(() => !done && client.resume(), action.ms).unref()
      } else client.resume()
    })
  }

  /** Closes the listener and every connection it holds. */
  close(): Promise<void> {
    for (const s of this.#sockets) s.destroy()
    this.#sockets.clear()
    return new Promise((resolve) => this.#server.close(() => resolve()))
  }
}
