/**
 * HTTP/1.1 spoken by hand on one keep-alive connection, as urllib3 (Blender's Flamenco add-on)
 * does: the whole request is written before any answer is read, and the answer may come while the
 * body is still being written. Node's own client half-closes or stops writing once it has an
 * answer, so it cannot show this.
 */
import { connect, type Socket } from 'node:net'

export interface RawAnswer {
  readonly status: number
  /** Header names in lower case. */
  readonly headers: Record<string, string>
  readonly body: Buffer
}

export interface RawConnOptions {
  /** Size of the writes `writeBody` makes (default 64 KiB). */
  readonly pieceBytes?: number
  /** How long `answer()` waits by default (default 20 s). */
  readonly answerTimeoutMs?: number
}

export class RawConn {
  readonly #sock: Socket
  readonly #host: string
  readonly #pieceBytes: number
  readonly #answerTimeoutMs: number
  #buf = Buffer.alloc(0)
  #wake: (() => void) | null = null
  #closed = false

  private constructor(sock: Socket, host: string, opts: RawConnOptions) {
    this.#sock = sock
    this.#host = host
    this.#pieceBytes = opts.pieceBytes ?? 64 * 1024
    this.#answerTimeoutMs = opts.answerTimeoutMs ?? 20_000
    sock.on('data', (d: Buffer) => {
      this.#buf = Buffer.concat([this.#buf, d])
      this.#wake?.()
    })
    sock.on('close', () => {
      this.#closed = true
      this.#wake?.()
    })
    sock.on('error', () => {})
  }

  /** Connects to the host and port of `url` (any path in it is ignored). */
  static open(url: string, opts: RawConnOptions = {}): Promise<RawConn> {
    const u = new URL(url)
    return new Promise((resolve, reject) => {
      const sock = connect(Number(u.port), u.hostname, () => resolve(new RawConn(sock, u.host, opts)))
      sock.once('error', reject)
    })
  }

  get closed(): boolean {
    return this.#closed
  }

  /** Writes a request head. `target` is a path (`/a/b`) or a whole URL whose path is sent. */
  head(method: string, target: string, headers: Record<string, string | number>): Promise<void> {
    const path = target.startsWith('/') ? target : (({ pathname, search }) => pathname + search)(new URL(target))
    const lines = [`${method} ${path} HTTP/1.1`, `Host: ${this.#host}`, ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`)]
    return this.write(Buffer.from(`${lines.join('\r\n')}\r\n\r\n`, 'latin1'))
  }

  write(data: Buffer): Promise<void> {
    return new Promise((resolve, reject) => this.#sock.write(data, (err) => (err ? reject(err) : resolve())))
  }

  /** Writes `data` in pieces of `pieceBytes`, each handed to the socket before the next. */
  async writeBody(data: Buffer): Promise<void> {
    for (let off = 0; off < data.length; off += this.#pieceBytes) await this.write(data.subarray(off, off + this.#pieceBytes))
  }

  /** The next answer on this connection (Content-Length framed). */
  async answer(timeoutMs = this.#answerTimeoutMs): Promise<RawAnswer> {
    const until = Date.now() + timeoutMs
    for (;;) {
      const end = this.#buf.indexOf('\r\n\r\n')
      if (end >= 0) {
        const lines = this.#buf.subarray(0, end).toString('latin1').split('\r\n')
        const status = Number(lines[0]!.split(' ')[1])
        const headers: Record<string, string> = {}
        for (const l of lines.slice(1)) {
          const i = l.indexOf(':')
          headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim()
        }
        const len = Number(headers['content-length'] ?? 0)
        if (this.#buf.length >= end + 4 + len) {
          const body = this.#buf.subarray(end + 4, end + 4 + len)
          this.#buf = this.#buf.subarray(end + 4 + len)
          return { status, headers, body }
        }
      }
      if (this.#closed) throw new Error('connection closed before a whole answer')
      if (Date.now() > until) throw new Error('no answer in time')
      await new Promise<void>((r) => {
        this.#wake = r
        setTimeout(r, 50)
      })
      this.#wake = null
    }
  }

  /** True when the head of an answer is already here (without waiting). */
  hasAnswer(): boolean {
    return this.#buf.indexOf('\r\n\r\n') >= 0
  }

  close(): void {
    this.#sock.destroy()
  }

  /** Resets the connection (TCP RST), as a client that crashed or was killed. */
  reset(): void {
    this.#sock.resetAndDestroy()
  }

  /** Half-closes: sends FIN and keeps reading (a client whose body ends early but waits for an answer). */
  end(): void {
    this.#sock.end()
  }

  /**
   * The next answer, or null when the server closes the connection without one. Throws when
   * neither happens within `timeoutMs` (a request left hanging).
   */
  async answerOrClose(timeoutMs = this.#answerTimeoutMs): Promise<RawAnswer | null> {
    try {
      return await this.answer(timeoutMs)
    } catch (err) {
      if (this.#closed && !this.hasAnswer()) return null
      throw err
    }
  }
}
