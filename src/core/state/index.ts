export * from './types.js'
export * from './range-set.js'
export { createEmbeddedState, EmbeddedSessionStore, MemoryLocker, MemoryBus } from './embedded.js'
export { createRedisState, connectRedis, RedisSessionStore, RedisLocker, RedisBus } from './redis.js'
