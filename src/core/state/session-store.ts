/**
 * The one SessionStore: each method is a pure transition of session-logic.ts handed to the
 * backend's `StepApplier`, which only reads, stores and lists records. The state machine is
 * written (and tested) once; a backend decides how a step becomes atomic (embedded: one process
 * and a journal line; Redis: a Lua compare-and-set on a version) and what "now" and "dead" mean.
 */
import {
  abortCommitStep,
  beginCommitStep,
  cancelStep,
  checkCommitStep,
  chunkId,
  completeStep,
  declareLengthStep,
  finishCommitStep,
  markDurableStep,
  openStep,
  releaseStep,
  removeIfExpiredStep,
  removeStep,
  renewCommitStep,
  renewStep,
  reserveStep,
  updateGridStep,
  type Step,
  type StepContext,
} from './session-logic.js'
import type {
  GridState,
  GridUpdate,
  NewSession,
  ReserveOutcome,
  SessionRecord,
  SessionStore,
} from './types.js'

/** A transition of the current record; `isChunk`: the `chunk` asked about was received before. */
export type StepFn<T> = (cur: SessionRecord | null, c: StepContext, isChunk: boolean) => Step<T>

/** What a backend provides under the SessionStore: atomic steps, reads and listings. */
export interface StepApplier {
  /**
   * Runs `step` on the key's record and stores its result, atomically with respect to every
   * other step on that key (on every instance). `nowMs` is the caller's clock (null: the store's
   * own); `chunk` (`start-end`) asks whether that exact chunk was received, for the step.
   */
  apply<T>(key: string, nowMs: number | null, step: StepFn<T>, chunk?: string): Promise<T>
  /** The record as last stored (after any write of it still in flight). */
  read(key: string): Promise<SessionRecord | null>
  /** A fencing token larger than every one given before, across restarts too. */
  nextFence(): number | Promise<number>
  listByTarget(keyPrefix: string, target: string): Promise<SessionRecord[]>
  listExpired(nowMs: number, ttlMs: number, limit: number): Promise<string[]>
  /** How many sessions the store holds (metrics). */
  count(): Promise<number>
  close(): Promise<void>
}

export class StepSessionStore implements SessionStore {
  readonly #a: StepApplier

  constructor(applier: StepApplier) {
    this.#a = applier
  }

  open(init: NewSession, nowMs: number) {
    return this.#a.apply(init.key, nowMs, (cur, c) => openStep(cur, init, c))
  }
  get(key: string) {
    return this.#a.read(key)
  }
  reserve(
    key: string,
    range: { start: number; end: number },
    token: string,
    nowMs: number,
    leaseMs: number,
    incarnation?: string,
  ) {
    const step: StepFn<ReserveOutcome> = (cur, c, isChunk) =>
      reserveStep(cur, range, token, leaseMs, incarnation, isChunk, c)
    return this.#a.apply(key, nowMs, step, chunkId(range))
  }
  renew(key: string, token: string, nowMs: number, leaseMs: number) {
    return this.#a.apply(key, nowMs, (cur, c) => renewStep(cur, token, leaseMs, c))
  }
  complete(key: string, token: string, nowMs: number, durable = false, end?: number) {
    return this.#a.apply(key, nowMs, (cur, c) => completeStep(cur, token, durable, c, end))
  }
  declareLength(key: string, totalBytes: number, nowMs: number) {
    return this.#a.apply(key, nowMs, (cur, c) => declareLengthStep(cur, totalBytes, c))
  }
  markDurable(
    key: string,
    incarnation: string,
    ranges: readonly { start: number; end: number }[],
    nowMs: number,
  ) {
    return this.#a.apply(key, nowMs, (cur, c) => markDurableStep(cur, incarnation, ranges, c))
  }
  release(key: string, token: string) {
    return this.#a.apply(key, null, (cur) => releaseStep(cur, token))
  }
  beginCommit(key: string, owner: string, nowMs: number, leaseMs: number) {
    const run = (fence: number) =>
      this.#a.apply(key, nowMs, (cur, c) => beginCommitStep(cur, owner, leaseMs, fence, c))
    // A synchronous fence keeps the embedded store's steps in call order (no await before them).
    const fence = this.#a.nextFence()
    return typeof fence === 'number' ? run(fence) : fence.then(run)
  }
  renewCommit(key: string, owner: string, nowMs: number, leaseMs: number) {
    return this.#a.apply(key, nowMs, (cur, c) => renewCommitStep(cur, owner, leaseMs, c))
  }
  checkCommit(key: string, owner: string, nowMs: number, marginMs: number) {
    return this.#a.apply(key, nowMs, (cur, c) => checkCommitStep(cur, owner, marginMs, c))
  }
  finishCommit(key: string, owner: string, result: string, nowMs: number) {
    return this.#a.apply(key, nowMs, (cur, c) => finishCommitStep(cur, owner, result, c))
  }
  abortCommit(key: string, owner: string) {
    return this.#a.apply(key, null, (cur) => abortCommitStep(cur, owner))
  }
  updateGrid<T>(
    key: string,
    incarnation: string,
    fn: (grid: GridState | null, session: SessionRecord) => GridUpdate<T>,
  ) {
    return this.#a.apply(key, null, (cur) => updateGridStep(cur, incarnation, fn))
  }
  cancel(key: string, nowMs: number) {
    return this.#a.apply(key, nowMs, (cur, c) => cancelStep(cur, c))
  }
  remove(key: string) {
    return this.#a.apply(key, null, (cur) => removeStep(cur))
  }
  listByTarget(keyPrefix: string, target: string) {
    return this.#a.listByTarget(keyPrefix, target)
  }
  listExpired(nowMs: number, ttlMs: number, limit: number) {
    return this.#a.listExpired(nowMs, ttlMs, limit)
  }
  count() {
    return this.#a.count()
  }
  removeIfExpired(key: string, nowMs: number, ttlMs: number) {
    return this.#a.apply(key, nowMs, (cur, c) => removeIfExpiredStep(cur, ttlMs, c))
  }
  close() {
    return this.#a.close()
  }
}
