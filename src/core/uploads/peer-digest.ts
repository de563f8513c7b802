/**
 * The peer-digest protocol over the bus: a commit on an instance without the session's running
 * hash asks every instance for it; the instance that opened the session (and so runs its hash)
 * finishes it and hands over the digest, so a commit that a load balancer sends elsewhere does
 * not read the whole file again.
 *
 *   commit ──HASH_REQUEST_CHANNEL {key, incarnation, size, reply}──▶ every instance
 *   owner  ──reply: ack──▶ commit (within PEER_ACK_MS, or the commit hashes the file itself)
 *   owner  ──reply: digest (sha256 | null)──▶ commit (within PEER_DIGEST_MS)
 */
import { randomUUID } from 'node:crypto'
import type { Logger } from 'pino'
import type { Bus, SessionRecord } from '../state/types.js'
import type { RunningHashes } from './running-hash.js'

/**
 * A commit without the running hash asks the other instances for it only from this size on.
 * Asking costs two Redis round trips when an instance has the hash (the common case: a load
 * balancer sent the commit elsewhere) and `PEER_ACK_MS` when none has; a full pass on the pool
 * costs ~0.7 ms per MiB (45 ms at 64 MiB, 0.8 s at 1 GiB). The session record names the instance
 * that runs the hash (`SessionRecord.hasher`), so a commit does not ask at all when that instance
 * is gone (a restart), is itself (an idle timeout), or none ran one.
 */
export const PEER_HASH_MIN_BYTES = 64 * 1024 * 1024
/** How long a commit waits for an instance to say it has the running hash, ms. */
const PEER_ACK_MS = 250
/** How long it then waits for that instance's digest (it reads what it has not hashed yet), ms. */
const PEER_DIGEST_MS = 60_000
const HASH_REQUEST_CHANNEL = 'uploads:hash-request'

/** Commit → every instance: "whoever has the running hash of this session, finish it". */
interface PeerHashRequest {
  readonly key: string
  /**
   * Ties the request to one incarnation of the session key: a hasher left from an aborted
   * session of the same id never answers.
   */
  readonly incarnation: string
  readonly size: number
  readonly reply: string
}
/**
 * Owner → the asking commit: first `ack`, then the digest (null when the running hash was lost).
 */
type PeerHashReply =
  | { readonly type: 'ack' }
  | { readonly type: 'digest'; readonly sha256: string | null }

export class PeerDigest {
  readonly #bus: Bus
  readonly #hashes: RunningHashes
  readonly #log: Logger
  #stopListening: (() => Promise<void>) | null = null

  constructor(bus: Bus, hashes: RunningHashes, log: Logger) {
    this.#bus = bus
    this.#hashes = hashes
    this.#log = log
  }

  /** Answers other instances' commits that lack a running hash this instance has. */
  async listen(): Promise<void> {
    if (this.#stopListening !== null) return
    this.#stopListening = await this.#bus.subscribe(HASH_REQUEST_CHANNEL, (message) => {
      this.#answer(message).catch((err: unknown) => {
        this.#log.warn({ err }, 'could not answer a peer hash request')
      })
    })
  }

  async close(): Promise<void> {
    const stop = this.#stopListening
    this.#stopListening = null
    await stop?.().catch(() => {})
  }

  async #answer(message: string): Promise<void> {
    let req: PeerHashRequest
    try {
      req = JSON.parse(message) as PeerHashRequest
    } catch {
      return
    }
    if (
      typeof req.key !== 'string' ||
      typeof req.reply !== 'string' ||
      !Number.isSafeInteger(req.size) ||
      typeof req.incarnation !== 'string'
    )
      return
    const hasher = this.#hashes.take(req.key, req.incarnation)
    if (hasher === null) return
    await this.#bus.publish(req.reply, JSON.stringify({ type: 'ack' } satisfies PeerHashReply))
    const result = await hasher.finish(req.size)
    const whole = result !== null && result.bytes === req.size
    const sha256 = whole ? (result.digests['sha256'] ?? null) : null
    const digest: PeerHashReply = { type: 'digest', sha256 }
    await this.#bus.publish(req.reply, JSON.stringify(digest))
  }

  /**
   * The session's sha256 from the instance that runs its hash, or null: none answered in time,
   * its hash was lost, or the bus failed (the commit then hashes the file itself).
   */
  async ask(session: SessionRecord, size: number): Promise<string | null> {
    try {
      return await this.#request(session, size)
    } catch (err) {
      const msg = 'could not ask the other instances for a running hash'
      this.#log.warn({ err, key: session.key }, msg)
      return null
    }
  }

  async #request(session: SessionRecord, size: number): Promise<string | null> {
    const reply = `uploads:hash-reply:${randomUUID()}`
    let acked = false
    let settle: (sha256: string | null) => void = () => {}
    const answer = new Promise<string | null>((resolve) => (settle = resolve))
    let timer: NodeJS.Timeout | undefined
    const unsubscribe = await this.#bus.subscribe(reply, (message) => {
      let m: PeerHashReply
      try {
        m = JSON.parse(message) as PeerHashReply
      } catch {
        return
      }
      if (m.type === 'ack' && !acked) {
        acked = true
        clearTimeout(timer)
        timer = setTimeout(() => settle(null), PEER_DIGEST_MS)
      } else if (m.type === 'digest') {
        settle(typeof m.sha256 === 'string' && /^[0-9a-f]{64}$/.test(m.sha256) ? m.sha256 : null)
      }
    })
    try {
      const { key, incarnation } = session
      const req: PeerHashRequest = { key, incarnation, size, reply }
      timer = setTimeout(() => settle(null), PEER_ACK_MS)
      await this.#bus.publish(HASH_REQUEST_CHANNEL, JSON.stringify(req))
      return await answer
    } finally {
      clearTimeout(timer)
      await unsubscribe().catch(() => {})
    }
  }
}
