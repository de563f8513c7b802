import type { ByteRange } from './range-set.js'

export type SessionState = 'open' | 'committing' | 'committed'

/** A range reserved by one in-flight request while its body streams to disk. */
export interface Reservation extends ByteRange {
  readonly token: string
  readonly expiresAtMs: number
  /**
   * The instance whose request holds it (`StateBackend.instanceId`): a dead holder's lease may be
   * broken early.
   */
  readonly holder: string
}

/**
 * One upload session as every instance sees it. The store keeps it whole and changes it only
 * through the atomic operations of SessionStore.
 */
export interface SessionRecord {
  /** Store key: `<family>:<client session id>`; opaque to the store. */
  readonly key: string
  /**
   * Random per creation of the key. A key removed (cancel, expiry, a Redis that lost its data) and
   * created again is a new incarnation with its own temp file: nothing of an earlier one leaks in.
   */
  readonly incarnation: string
  /** The path the session will publish to, exactly as the client gave it (family-relative). */
  readonly target: string
  /**
   * Declared total size, bytes; null while the client has not declared it yet (declared once,
   * later, by `declareLength`; a commit is refused until then).
   */
  readonly totalBytes: number | null
  /** Temp file name inside `<dataDir>/tmp/`; unique to this incarnation. */
  readonly tempName: string
  /**
   * The instance that set out to run the session's running hash (it opened the session with a
   * free stream slot); null: none did. A commit elsewhere asks the other instances for the hash
   * only while this instance is alive. Absent in records written before it existed: unknown.
   */
  readonly hasher?: string | null
  /**
   * Opaque client metadata given at open (string → string, bounded: see `checkMetadata`); `{}`
   * for none and for records written before it existed.
   */
  readonly metadata: Readonly<Record<string, string>>
  readonly createdAtMs: number
  /** Creation, then every chunk that added a range; expiry counts from here. */
  readonly updatedAtMs: number
  /** Received bytes: sorted, merged, inclusive. */
  readonly received: readonly ByteRange[]
  /** How many chunks were received (each is also kept, exactly, in the store's chunk set). */
  readonly chunks: number
  readonly reservations: readonly Reservation[]
  readonly state: SessionState
  /** Who holds the commit and until when (state `committing`). */
  readonly commitOwner: string | null
  /** The instance running that commit. */
  readonly commitHolder: string | null
  readonly commitLeaseUntilMs: number
  /**
   * The fencing token of the running commit: the store's version counter when it began, so it only
   * ever grows, across incarnations too. Checked before every irreversible step of the commit.
   */
  readonly commitFence: number
  /** The committed answer (family-defined JSON), so a repeated commit answers alike. */
  readonly result: string | null
  /**
   * Received ranges not yet flushed to disk (FERRY_FSYNC=commit), by the instance that wrote
   * them and the boot of its host. When that instance is found dead, they stay received only if
   * its host did not reboot (the page cache outlived the process); otherwise they are dropped from
   * `received` and the client is asked for them again: a power cut never publishes zeros.
   */
  readonly owed: readonly OwedRanges[]
  /**
   * The session's part grid in the bucket (FERRY_STORAGE=s3, uploads/grid.ts); absent until its
   * first chunk is staged there, and for every session kept on a filesystem.
   */
  readonly grid?: GridState
}

/**
 * Where a session's received bytes are in the bucket: cell `i` of the grid is bytes
 * `[i*cell, min((i+1)*cell, total) - 1]`; it is a part of the multipart upload once whole, or
 * fragments (edge pieces of chunks) until then.
 */
export interface GridState {
  /** Cell size in bytes, fixed when the multipart upload was created. */
  readonly cell: number
  readonly uploadId: string
  /** Part ETags by cell index (the part number is the index + 1). */
  readonly parts: Readonly<Record<string, string>>
  /** Fragment objects by cell index, as the inclusive file ranges they hold. */
  readonly frags: Readonly<Record<string, readonly ByteRange[]>>
  /**
   * The commit record: `completing` is written before CompleteMultipartUpload, `completed` once
   * it answered; a later commit (after a crash) skips what is done and redoes the rest.
   */
  readonly commit?: 'completing' | 'completed'
}

/** What `SessionStore.updateGrid`'s function answers: the new grid (or `same`) and an output. */
export interface GridUpdate<T> {
  readonly grid: GridState | 'same'
  readonly out: T
}

export interface OwedRanges {
  readonly holder: string
  /** `/proc/sys/kernel/random/boot_id` of the holder's host. */
  readonly boot: string
  readonly ranges: readonly ByteRange[]
}

export interface NewSession {
  readonly key: string
  readonly incarnation: string
  readonly target: string
  /** Null: not known yet (see `SessionStore.declareLength`). */
  readonly totalBytes: number | null
  readonly tempName: string
  /** Checked by `open` (ERR_INVALID_ARGUMENT past its bounds); absent: none. */
  readonly metadata?: Readonly<Record<string, string>>
  /** See `SessionRecord.hasher`. */
  readonly hasher?: string | null
}

/** Bounds on what one client can make the store hold (0 = no bound). */
export interface StateLimits {
  /**
   * Sessions the store holds at once, committed tombstones included; `open` beyond is
   * ERR_UNAVAILABLE.
   */
  readonly maxSessions: number
  /** Separate received ranges (gaps) one session may have. */
  readonly maxRangesPerSession: number
  /** Chunks one session may receive. */
  readonly maxChunksPerSession: number
}

export const DEFAULT_STATE_LIMITS: StateLimits = Object.freeze({
  maxSessions: 10_000,
  maxRangesPerSession: 256,
  maxChunksPerSession: 100_000,
})

export type ReserveOutcome =
  | { readonly status: 'reserved'; readonly session: SessionRecord }
  /**
   * The range is exactly one chunk received before: the caller may compare and answer as a no-op.
   */
  | { readonly status: 'received'; readonly session: SessionRecord }
  /** The range touches received bytes without being exactly one received chunk. */
  | { readonly status: 'straddles'; readonly session: SessionRecord }
  /** Another live request holds an overlapping reservation. */
  | { readonly status: 'busy'; readonly session: SessionRecord }
  | { readonly status: 'closed'; readonly session: SessionRecord }
  /** The session would pass a StateLimits bound. */
  | { readonly status: 'limit'; readonly session: SessionRecord; readonly reason: string }
  /** No session (or not the incarnation the caller expected). */
  | { readonly status: 'missing' }

export type CommitOutcome =
  | {
      readonly status: 'begun'
      readonly session: SessionRecord
      readonly takenOverFrom: string | null
    }
  | { readonly status: 'committed'; readonly session: SessionRecord }
  | { readonly status: 'incomplete'; readonly session: SessionRecord }
  | { readonly status: 'busy'; readonly session: SessionRecord }
  | { readonly status: 'missing' }

export type DeclareLengthOutcome =
  /** The length is set now, or was already set to this very value (a retry). */
  | { readonly status: 'declared'; readonly session: SessionRecord }
  /** Another length is declared already: a length never changes. */
  | { readonly status: 'conflict'; readonly session: SessionRecord }
  /** Shorter than bytes received or reserved already. */
  | { readonly status: 'too-small'; readonly session: SessionRecord }
  | { readonly status: 'closed'; readonly session: SessionRecord }
  | { readonly status: 'missing' }

export type CancelOutcome =
  | { readonly status: 'removed'; readonly session: SessionRecord }
  /** A commit holds the session: cancelling now would race its publish. */
  | { readonly status: 'busy'; readonly session: SessionRecord }
  | { readonly status: 'missing' }

/**
 * Upload sessions shared by every instance. Every method is one atomic read-modify-write: two
 * instances may call any of them on one session at the same moment.
 *
 * Times: callers pass their own `Date.now()`-based `nowMs`. The store judges leases on ITS clock
 * (Redis: TIME, read in the same transaction as the record), shifted by the caller's offset from
 * its own clock, so instances with skewed clocks agree and the contract suite can still drive
 * expiry by passing times in the future.
 */
export interface SessionStore {
  /** Creates the session unless one with this key exists; answers the record either way. */
  open(init: NewSession, nowMs: number): Promise<{ created: boolean; session: SessionRecord }>
  get(key: string): Promise<SessionRecord | null>
  /**
   * Reserves `range` for one request (token) until `nowMs + leaseMs`. Refuses ranges that touch
   * received bytes or a live reservation; ignores expired reservations and those of dead
   * instances. With `incarnation`, answers `missing` unless the session is that incarnation.
   */
  reserve(
    key: string,
    range: { start: number; end: number },
    token: string,
    nowMs: number,
    leaseMs: number,
    incarnation?: string,
  ): Promise<ReserveOutcome>
  /** Extends a live reservation; false when it is gone (expired and taken, or session removed). */
  renew(key: string, token: string, nowMs: number, leaseMs: number): Promise<boolean>
  /**
   * Marks the reserved range received and drops the reservation; null when it is gone. Unless
   * `durable` (the bytes were fsynced), the range is also owed by this instance until
   * `markDurable`. With `end` (inside the reservation): only its prefix `[start, end]` is marked,
   * what a body cut short left in the file; the rest of the reservation is freed.
   */
  complete(
    key: string,
    token: string,
    nowMs: number,
    durable?: boolean,
    end?: number,
  ): Promise<SessionRecord | null>
  /** These ranges, written by this instance into this incarnation, are now on disk. */
  markDurable(
    key: string,
    incarnation: string,
    ranges: readonly { start: number; end: number }[],
    nowMs: number,
  ): Promise<void>
  /**
   * Declares the total size of a session opened without one: once, never below the bytes
   * received or reserved, never changed afterwards (declaring the same value again is a no-op).
   */
  declareLength(key: string, totalBytes: number, nowMs: number): Promise<DeclareLengthOutcome>
  /** Drops a reservation without marking anything (abort, short body, error). */
  release(key: string, token: string): Promise<void>
  /**
   * Starts a commit: `begun` only when every byte is received, no live commit holds the session
   * and it is open; after that `reserve` answers `closed` until `abortCommit`.
   */
  beginCommit(key: string, owner: string, nowMs: number, leaseMs: number): Promise<CommitOutcome>
  /** Extends a running commit's lease; false when the commit is no longer ours. */
  renewCommit(key: string, owner: string, nowMs: number, leaseMs: number): Promise<boolean>
  /**
   * The fence: true only while `owner` holds the commit with at least `marginMs` of lease left on
   * the store's clock. Asked right before each irreversible step.
   */
  checkCommit(key: string, owner: string, nowMs: number, marginMs: number): Promise<boolean>
  /** Records the committed answer; the record stays as a tombstone until it expires. */
  finishCommit(key: string, owner: string, result: string, nowMs: number): Promise<boolean>
  /** Gives a failed commit back: the session is open again. */
  abortCommit(key: string, owner: string): Promise<void>
  /**
   * Changes the grid of this incarnation of the session, atomically: `fn` gets the current grid
   * (null: none yet) and may run more than once (it must be pure). Null when the session is gone
   * or another incarnation.
   */
  updateGrid<T>(
    key: string,
    incarnation: string,
    fn: (grid: GridState | null, session: SessionRecord) => GridUpdate<T>,
  ): Promise<{ readonly out: T; readonly session: SessionRecord } | null>
  /** A client's cancel: removes the session unless a live commit holds it. */
  cancel(key: string, nowMs: number): Promise<CancelOutcome>
  /**
   * Removes the session whatever its state; answers what was removed (to delete its temp file) or
   * null.
   */
  remove(key: string): Promise<SessionRecord | null>
  /** Sessions whose target equals `target` exactly (keys of one family share a prefix). */
  listByTarget(keyPrefix: string, target: string): Promise<SessionRecord[]>
  /** Keys whose `updatedAtMs + ttlMs <= nowMs`, oldest first, at most `limit`. */
  listExpired(nowMs: number, ttlMs: number, limit: number): Promise<string[]>
  /** Removes the session only if it is still expired and nothing is in flight on it. */
  removeIfExpired(key: string, nowMs: number, ttlMs: number): Promise<SessionRecord | null>
  /** How many sessions the store holds, of every state (metrics). */
  count(): Promise<number>
  close(): Promise<void>
}

/** A held lock. Renewed in the background every third of its lifetime until released. */
export interface Lock {
  readonly key: string
  readonly token: string
  /** Aborted when the lock is lost (renewal failed or overdue) or released. */
  readonly signal: AbortSignal
  /**
   * The fence before an irreversible step: throws unless the lock is still ours in the store with
   * at least a third of its lifetime left.
   */
  check(): Promise<void>
  release(): Promise<void>
}

export interface WaitOptions {
  /** Longest wait, ms (0: look once; Infinity: until done or aborted). */
  readonly waitMs: number
  /** Stops the wait with a LockAbortedError (a free key still answers at once). */
  readonly signal?: AbortSignal
  /**
   * Run before every look after the first, i.e. on every wake-up: throw to stop waiting. For a
   * waiter whose reason to wait can end while the lock stays held (its holder calls
   * `notifyWaiters` when it changes that reason).
   */
  readonly recheck?: () => Promise<void> | void
}

/** How `Locker.acquire` takes a lock. */
export interface AcquireOptions extends WaitOptions {
  /** Lease, ms: renewed every third of it while held; lapses this long after its holder died. */
  readonly ttlMs: number
  /**
   * Called (on the holder's instance) when another waiter asks for this lock with
   * `requestRelease`, as tusd's `Lock(ctx, requestUnlock)` and @tus/server's
   * `lock(signal, requestRelease)` do. The holder decides: one that ignores it keeps the lock
   * until it releases or its lease runs out.
   */
  readonly onReleaseRequested?: () => void
  /**
   * When the lock is found held, ask its holder once to release it (tus: a resumed upload
   * pre-empts a hung one).
   */
  readonly requestRelease?: boolean
}

/**
 * Mutual exclusion and in-flight claims shared by every instance (Redis: SET NX PX with an owner
 * token, compare-and-delete release). A release is announced on the bus, so waiters on any
 * instance try again at once instead of polling; a slow re-check, bounded by the holder's lease,
 * still wakes them when a message is lost or the holder died without releasing.
 */
export interface Locker {
  /** Takes the lock if free; null when another owner holds it. */
  tryAcquire(key: string, ttlMs: number): Promise<Lock | null>
  /**
   * Takes the lock, waiting up to `waitMs` for its holder to release it (or its lease to run
   * out). Throws LockTimeoutError (ERR_LOCKED) or LockAbortedError (ERR_CLIENT_ABORTED).
   */
  acquire(key: string, options: AcquireOptions): Promise<Lock>
  /** Resolves once no owner holds `key`, without taking it; throws as `acquire` does. */
  waitUntilFree(key: string, options: WaitOptions): Promise<void>
  /** Asks whoever holds `key`, on any instance, to release it (their `onReleaseRequested`). */
  requestRelease(key: string): Promise<void>
  /**
   * Wakes every waiter of `key` to look again (and run its `recheck`), without a release: for a
   * holder that changed what its waiters decide on (a bulk-ingest run that now marks the project
   * busy).
   */
  notifyWaiters(key: string): Promise<void>
  /** True while any owner holds `key`. */
  isHeld(key: string): Promise<boolean>
  close(): Promise<void>
}

/** Fire-and-forget messages to every instance (Redis pub/sub), this one included. */
export interface Bus {
  publish(channel: string, message: string): Promise<void>
  subscribe(channel: string, handler: (message: string) => void): Promise<() => Promise<void>>
  close(): Promise<void>
}

/** What `createState` hands the rest of Ferry. */
export interface StateBackend {
  /**
   * The bus that reaches the other instances sharing this state (Redis), or null when this
   * process is alone with it (embedded): then nobody else can answer a question asked on it.
   */
  readonly peers: Bus | null
  /** Which store and where, for logs and messages (credentials masked). */
  describe(): string
  /** This process's name in leases; unique per start. */
  readonly instanceId: string
  /**
   * Whether the instance of that id is running (its liveness key is fresh; embedded: it is this
   * one).
   */
  isAlive(instanceId: string): Promise<boolean>
  readonly sessions: SessionStore
  readonly locker: Locker
  readonly bus: Bus
  close(): Promise<void>
}
