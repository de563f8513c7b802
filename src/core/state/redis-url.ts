/**
 * The three ways to reach Redis, written as one `REDIS_URL`:
 *
 * - `redis://[user:pass@]host:port[/db]` (or `rediss://`): one server, as ioredis reads it.
 * - `redis+sentinel://[user:pass@]host:port,host:port/<master name>[/db][?sentinelPassword=…]`:
 *   the sentinels to ask, and the name of the primary they watch; the credentials are the data
 *   nodes'. ioredis asks a sentinel for the primary and asks again after a failover.
 * - `redis+cluster://[user:pass@]host:port,host:port`: seed nodes of a Redis Cluster; ioredis
 *   learns the rest of the cluster (and its slot map) from them.
 */

export interface RedisNode {
  readonly host: string
  readonly port: number
}

export type RedisTarget =
  | { readonly mode: 'single'; readonly url: string }
  | {
      readonly mode: 'sentinel'
      readonly sentinels: readonly RedisNode[]
      readonly name: string
      readonly db: number
      readonly username?: string
      readonly password?: string
      readonly sentinelPassword?: string
      readonly tls: boolean
    }
  | {
      readonly mode: 'cluster'
      readonly nodes: readonly RedisNode[]
      readonly username?: string
      readonly password?: string
      readonly tls: boolean
    }

const MULTI = /^(rediss?)\+(sentinel|cluster):\/\/(?:([^/?#]*)@)?([^/?#@]+)(\/[^?#]*)?(\?[^#]*)?$/i

function nodesOf(list: string, what: string): RedisNode[] {
  return list.split(',').map((hp) => {
    const m = /^(\[[0-9a-f:.]+\]|[^:[\]]+)(?::(\d{1,5}))?$/i.exec(hp.trim())
    const port = m?.[2] === undefined ? (what === 'sentinel' ? 26379 : 6379) : Number(m[2])
    if (m === null || port < 1 || port > 65535) throw new Error(`bad ${what} address "${hp}"`)
    return { host: m[1]!.replace(/^\[|\]$/g, ''), port }
  })
}

/** Reads a `REDIS_URL`; throws an Error (without the password) when it is malformed. */
export function parseRedisUrl(url: string): RedisTarget {
  if (/^rediss?:\/\//i.test(url)) return { mode: 'single', url }
  const m = MULTI.exec(url)
  if (m === null) {
    throw new Error(
      'must be redis://, rediss://, redis+sentinel://hosts/master or redis+cluster://hosts',
    )
  }
  const tls = m[1]!.toLowerCase() === 'rediss'
  const mode = m[2]!.toLowerCase() as 'sentinel' | 'cluster'
  const auth: { username?: string; password?: string } = {}
  if (m[3] !== undefined) {
    const colon = m[3].indexOf(':')
    const user = decodeURIComponent(colon < 0 ? m[3] : m[3].slice(0, colon))
    if (colon >= 0) auth.password = decodeURIComponent(m[3].slice(colon + 1))
    if (user !== '') auth.username = user
  }
  const nodes = nodesOf(m[4]!, mode)
  const path = (m[5] ?? '').split('/').filter((s) => s !== '')
  const query = new URLSearchParams(m[6] ?? '')
  if (mode === 'cluster') {
    // A cluster has only database 0, and no master name.
    if (path.length > 0) throw new Error('redis+cluster:// takes no path (a cluster has only db 0)')
    return { mode, nodes, ...auth, tls }
  }
  const name = decodeURIComponent(path[0] ?? '')
  if (name === '' || path.length > 2) {
    throw new Error('redis+sentinel:// needs the master name as its path: /<name>[/<db>]')
  }
  const db = path[1] === undefined ? 0 : Number(path[1])
  if (!Number.isInteger(db) || db < 0) throw new Error(`bad database number "${path[1]}"`)
  const sentinelPassword = query.get('sentinelPassword') ?? undefined
  return {
    mode,
    sentinels: nodes,
    name,
    db,
    ...auth,
    tls,
    ...(sentinelPassword === undefined ? {} : { sentinelPassword }),
  }
}
