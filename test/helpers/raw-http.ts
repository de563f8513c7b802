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
      const sock = connect(Number(u.port), u.hostname, () =>
        resolve(new RawConn(sock, u.host, opts)),
      )
      sock.once('error', reject)
    })
  }

  get closed(): boolean {
    return this.#closed
  }

  /** Writes a request head. `target` is a path (`/a/b`) or a whole URL whose path is sent. */
  head(method: string, target: string, headers: Record<string, string | number>): Promise<void> {
    const path = target.startsWith('/')
      ? target
      : (({ pathname, search }) => pathname + search)(new URL(target))
    const lines = [
      `${method} ${path} HTTP/1.1`,
      `Host: ${this.#host}`,
      ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`),
    ]
    return this.write(Buffer.from(`${lines.join('\r\n')}\r\n\r\n`, 'latin1'))
  }

  write(data: Buffer): Promise<void> {
    return new Promise((resolve, reject) =>
      this.#sock.write(data, (err) => (err ? reject(err) : resolve())),
    )
  }

  /** Writes `data` in pieces of `pieceBytes`, each handed to the socket before the next. */
  async writeBody(data: Buffer): Promise<void> {
    for (let off = 0; off < data.length; off += this.#pieceBytes)
      await this.write(data.subarray(off, off + this.#pieceBytes))
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

  /**
   * Half-closes: sends FIN and keeps reading (a client whose body ends early but waits for an
   * answer).
   */
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

/** What became of one request sent by `sendRaw`. */
export interface RawOutcome {
  /** Status of the first final (non-1xx) answer, or null when the connection ended without one. */
  readonly status: number | null
  /**
   * Bytes of the answer that had arrived when `sendRaw` returned (head and what came of the body).
   */
  readonly answer: Buffer
  /** The server closed (or reset) the connection before `sendRaw` returned. */
  readonly closed: boolean
  /** Neither an answer nor a close came within `timeoutMs` after the last byte was sent. */
  readonly timedOut: boolean
  /** ms from the last byte written (or the half-close) to the answer's head or the close. */
  readonly latencyMs: number
  /**
   * With `followUp`: what became of the next request sent on the same connection after a
   * keep-alive answer ('answered', 'closed', or 'timeout'); null when it was not sent.
   */
  readonly followUp: 'answered' | 'closed' | 'timeout' | null
}

export interface SendRawOptions {
  /**
   * After the bytes: 'wait' keeps the connection open for the answer (the request is complete),
   * 'half-close' sends FIN at once (a truncated request: the client has nothing more to say),
   * 'reset' destroys the socket (a client that vanishes; nothing is awaited).
   */
  readonly ending: 'wait' | 'half-close' | 'reset'
  /** How long to wait for an answer or a close (default 10 s). */
  readonly timeoutMs?: number
  /** Once a 5xx head is in, how long to keep reading its body for the report (default 200 ms). */
  readonly errorBodyMs?: number
  /**
   * A second request to send on the same connection once a final answer came that keeps the
   * connection open ('wait' only): a server must read or discard the rest of the first request,
   * or close, so that this one is answered (or the connection closed) within `timeoutMs`.
   */
  readonly followUp?: Buffer
  /**
   * A slow client: the bytes go in `pieces` writes with `pauseMs` between them (the first piece
   * ends with the head, so the pauses fall inside the body).
   */
  readonly slow?: { readonly pieces: number; readonly pauseMs: number; readonly headBytes: number }
}

/**
 * Sends `bytes` as they are on a new connection to 127.0.0.1:`port` (malformed HTTP included)
 * and reports the first final answer's status, or that the server closed without one. 1xx
 * answers (100 Continue) are skipped. The connection is always destroyed before returning.
 */
export function sendRaw(port: number, bytes: Buffer, opts: SendRawOptions): Promise<RawOutcome> {
  const timeoutMs = opts.timeoutMs ?? 10_000
  return new Promise((resolve) => {
    const sock = connect(port, '127.0.0.1')
    let buf = Buffer.alloc(0)
    let sentAt = 0
    let answeredAt = 0
    let status: number | null = null
    let done = false
    let timer: NodeJS.Timeout | null = null
    let followUp: RawOutcome['followUp'] = null
    let firstEnd = -1
    const finish = (closed: boolean, timedOut: boolean) => {
      if (done) return
      done = true
      if (timer !== null) clearTimeout(timer)
      sock.destroy()
      if (followUp === 'timeout') followUp = closed ? 'closed' : timedOut ? 'timeout' : 'answered'
      const end = answeredAt !== 0 ? answeredAt : Date.now()
      resolve({
        status,
        answer: buf,
        closed,
        timedOut: timedOut && followUp === null,
        latencyMs: sentAt === 0 ? 0 : Math.max(0, end - sentAt),
        followUp,
      })
    }
    /** After a keep-alive answer: sends the follow-up; its head (or a close) ends the exchange. */
    const startFollowUp = (): boolean => {
      const head = buf.subarray(0, firstEnd).toString('latin1')
      if (
        opts.followUp === undefined ||
        opts.ending !== 'wait' ||
        /^connection:\s*close/im.test(head) ||
        /^HTTP\/1\.0/.test(head)
      )
        return false
      followUp = 'timeout' // until something else is seen
      if (timer !== null) clearTimeout(timer)
      timer = setTimeout(() => finish(false, true), timeoutMs)
      sock.write(opts.followUp, () => {})
      return true
    }
    /** Reads the first final head in `buf`, if there is one. Interim answers are skipped. */
    const readHead = (): boolean => {
      let from = 0
      while (status === null) {
        const end = buf.indexOf('\r\n\r\n', from)
        if (end < 0) return false
        const m = /^HTTP\/\d\.\d (\d{3})/.exec(
          buf.subarray(from, Math.min(end, from + 64)).toString('latin1'),
        )
        const code = m ? Number(m[1]) : 0
        if (code >= 100 && code < 200) {
          from = end + 4
          continue
        }
        status = code
        answeredAt = Date.now()
        firstEnd = end
      }
      return true
    }
    sock.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d])
      if (followUp !== null) {
        const next = buf.indexOf('HTTP/1.1 ', firstEnd)
        if (next >= 0 && buf.indexOf('\r\n\r\n', next) >= 0) finish(false, false)
        return
      }
      if (status !== null || !readHead()) return
      if ((status ?? 0) < 500 && sentAt !== 0 && startFollowUp()) return
      // A 5xx is kept open a little longer so the report can show its body.
      if ((status ?? 0) >= 500) setTimeout(() => finish(false, false), opts.errorBodyMs ?? 200)
      else finish(false, false)
    })
    const ended = () => {
      readHead()
      finish(true, false)
    }
    sock.on('error', ended)
    sock.on('close', ended)
    /** Writes the bytes (in slow pieces when asked), then calls `done` once all are handed over. */
    const writeAll = (done: () => void) => {
      const slow = opts.slow
      if (slow === undefined || slow.pieces < 2 || bytes.length <= slow.headBytes)
        return void sock.write(bytes, done)
      const body = bytes.length - slow.headBytes
      const cuts = Array.from(
        { length: slow.pieces },
        (_, i) => slow.headBytes + Math.floor((body * i) / (slow.pieces - 1)),
      )
      let i = 0
      const next = () => {
        if (i >= cuts.length - 1 || sock.destroyed) return done()
        const piece = bytes.subarray(cuts[i]!, cuts[i + 1]!)
        i++
        sock.write(piece, () => (i >= cuts.length - 1 ? done() : setTimeout(next, slow.pauseMs)))
      }
      sock.write(bytes.subarray(0, cuts[0]!), () => setTimeout(next, slow.pauseMs))
    }
    sock.on('connect', () => {
      writeAll(() => {
        if (done) return
        sentAt = Date.now()
        if (opts.ending === 'reset') return finish(true, false)
        if (opts.ending === 'half-close') sock.end()
        timer = setTimeout(() => finish(false, true), timeoutMs)
      })
    })
  })
}
