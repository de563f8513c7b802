export * from './types.js'
export * from './range-set.js'
export { StepSessionStore, type StepApplier, type StepFn } from './session-store.js'
export { BusLocker, LockAbortedError, LockTimeoutError, type LockTable } from './locker.js'
export {
  createEmbeddedState,
  EmbeddedSessionStore,
  MemoryLocker,
  MemoryLockTable,
  MemoryBus,
} from './embedded.js'
export {
  createRedisState,
  connectRedis,
  RedisSessionStore,
  RedisLocker,
  RedisBus,
} from './redis.js'
