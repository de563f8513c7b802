/**
 * A TCP proxy for uploader tests: every connection's request bytes are held to `bytesPerSec`
 * (so a test can stop an upload half way), and a connection the plan marks is cut (FIN both
 * ways) after that many request bytes, mid-body, like a flaky link.
 */
import { connect, createServer, type Server, type Socket } from 'node:net'

export interface ProxyPlan {
  /** Upstream rate of each connection, bytes/s; 0: unlimited. */
  bytesPerSec: number
  /** For the nth connection (0-based): cut it after this many request bytes, or null to pass. */
  cutAfter: (n: number) => number | null
}

export class ThrottleProxy {
  readonly #server: Server
  readonly #sockets = new Set<Socket>()
  readonly plan: ProxyPlan
  connections = 0
  cuts = 0

  private constructor(server: Server, targetPort: number, plan: ProxyPlan) {
    this.#server = server
    this.plan = plan
    server.on('connection', (c) => this.#accept(c, targetPort))
  }

  static start(targetPort: number, plan: ProxyPlan): Promise<ThrottleProxy> {
    const server = createServer()
    const proxy = new ThrottleProxy(server, targetPort, plan)
    return new Promise((resolve, reject) => {
      server.once('error', reject)
      server.listen(0, '127.0.0.1', () => resolve(proxy))
    })
  }

  get url(): string {
    return `http://127.0.0.1:${(this.#server.address() as { port: number }).port}`
  }

  #accept(client: Socket, port: number): void {
    const cutAt = this.plan.cutAfter(this.connections++)
    const up = connect(port, '127.0.0.1')
    this.#sockets.add(client).add(up)
    const end = () => {
      client.destroy()
      up.destroy()
      this.#sockets.delete(client)
      this.#sockets.delete(up)
    }
    for (const s of [client, up]) {
      s.on('error', end)
      s.on('close', end)
    }
    let sent = 0
    client.on('data', (d: Buffer) => {
      let chunk = d
      if (cutAt !== null && sent + d.length >= cutAt) {
        chunk = d.subarray(0, Math.max(0, cutAt - sent))
        up.write(chunk, () => {
          this.cuts++
          end()
        })
        client.pause()
        return
      }
      sent += chunk.length
      up.write(chunk)
      const rate = this.plan.bytesPerSec
      if (rate > 0) {
        client.pause()
        setTimeout(() => client.resume(), (chunk.length / rate) * 1000)
      }
    })
    up.on('data', (d: Buffer) => client.write(d))
  }

  close(): Promise<void> {
    for (const s of this.#sockets) s.destroy()
    return new Promise((resolve) => this.#server.close(() => resolve()))
  }
}
