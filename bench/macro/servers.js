// The registry of servers under test: one entry per server, the only list of them in bench/.
// run.js, the report and the README table all read it.
//
//   name           the --servers name and the results' `server` field
//   proto          what the load generator speaks to it: 'ferry' | 'minimal' | 'tus'; 'disk' is
//                  no server (macro/disk.js does the writing itself)
//   takes          the scenario letters it runs (all that can take it when absent)
//   ceiling        a ceiling of the report (disk, minimal, minimal-durable, tus)
//   build          Ferry only: 'a' (--ferry-main) or 'b' (--ferry-main-b, compare runs)
//   comparesWith   a build-b server: its build-a twin, for the B/A ratios of the report
//   instances      processes sharing one data directory (requests round-robin over them)
//   redis          needs the private redis-server the driver starts
//   redisCluster   on a private 3-primary Redis Cluster the driver starts instead
//   env            extra environment for every instance
//   readyPath      ready once `GET readyPath` answers 200
//   color          its bars in the report's chart
//   what           one line for --help and the README
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { loadFerryLayout } from '../ferry-layout.js'

const macroDir = path.dirname(fileURLToPath(import.meta.url))
const rootDir = path.resolve(macroDir, '..', '..')

function ferry(build, colors) {
  const n = build === 'a' ? 'ferry' : 'ferry-b'
  const of = build === 'a' ? '' : ' (build B, --ferry-main-b)'
  const entry = (variant, color, more, what) => ({
    name: `${n}-${variant}`,
    proto: 'ferry',
    build,
    readyPath: '/healthz',
    instances: 1,
    color,
    ...(build === 'b' ? { comparesWith: `ferry-${variant}` } : {}),
    ...more,
    what,
  })
  return [
    entry('embedded', colors[0], {}, `Ferry${of}, embedded state`),
    entry(
      'redis',
      colors[1],
      { redis: true },
      `Ferry${of} on a private redis-server (no persistence, own key prefix per run)`,
    ),
    entry(
      'redis-x2',
      colors[2],
      { redis: true, instances: 2 },
      `two Ferry${of} instances on one data directory behind haproxy, as deploy/cluster runs them`,
    ),
    // Build A only: Ferry with FERRY_FSYNC=none (goal 2: like for like with the servers that
    // never fsync), and against redis-x2, the cost of a 3-primary Redis Cluster.
    ...(build === 'a'
      ? [
          entry(
            'embedded-nofsync',
            '#aec7e8',
            { env: { FERRY_FSYNC: 'none' }, takes: NOFSYNC_TAKES },
            'Ferry, embedded state, FERRY_FSYNC=none (no fsync at all; publish still by rename)',
          ),
          entry(
            'redis-nofsync',
            '#98df8a',
            { redis: true, env: { FERRY_FSYNC: 'none' }, takes: NOFSYNC_TAKES },
            'Ferry on Redis, FERRY_FSYNC=none',
          ),
          entry(
            'redis-cluster-x2',
            '#d62728',
            { redis: true, redisCluster: true, instances: 2 },
            'two Ferry instances on a private 3-primary Redis Cluster (not in the default run)',
          ),
        ]
      : []),
  ]
}

/**
 * FERRY_FSYNC=none rows: chunked (goal 2 needs b1) and the small files (what fsync costs them:
 * the room group commit has, goal 4).
 */
const NOFSYNC_TAKES = ['b', 'c', 'd']

/** The bench's own servers (macro/servers/): the minimal ceiling and the tus peer. */
const own = (name, script, color, more, what) => {
  const proto = script === 'tus.js' ? 'tus' : 'minimal'
  return {
    name,
    proto,
    readyPath: '/healthz',
    instances: 1,
    script,
    color,
    ceiling: true,
    ...more,
    what,
  }
}

export const SERVERS = [
  ...ferry('a', ['#1f77b4', '#2ca02c', '#17becf']),
  ...ferry('b', ['#9467bd', '#8c564b', '#e377c2']),
  // No HTTP: macro/disk.js writes the bytes itself with Ferry's write size and fsync cadence.
  {
    name: 'disk',
    proto: 'disk',
    instances: 1,
    color: '#393b79',
    ceiling: true,
    takes: ['a', 'b', 'c', 'd', 'f'],
    what: "no HTTP: the same bytes written with Ferry's write size and fdatasync cadence — the physical limit, durable",
  },
  own(
    'minimal',
    'minimal.js',
    '#7f7f7f',
    {},
    'node:http writing bodies to files, no hash, no fsync: the ceiling',
  ),
  // The same server, fdatasync + directory fsync before answering a commit or whole-file PUT:
  // the ceiling for a server that, like Ferry, has the bytes on disk when it says 200.
  own(
    'minimal-durable',
    'minimal.js',
    '#bcbd22',
    { env: { BENCH_FSYNC: '1' } },
    'the same, fdatasync + directory fsync before a commit or whole PUT is answered',
  ),
  own('tus', 'tus.js', '#ff7f0e', {}, '@tus/server + @tus/file-store: the peer'),
]

export const SERVER_NAMES = SERVERS.map((s) => s.name)
export const serverByName = (name) => SERVERS.find((s) => s.name === name)
/** The servers a run picks when --servers is not given: build B only when it was named. */
export const defaultServers = (withB) =>
  SERVERS.filter((s) => (withB || s.build !== 'b') && !s.redisCluster).map((s) => s.name)

/** Where the minimal server keeps uploads: it mimics Ferry's layout (see its header). */
const minimalLayout = (dataDir) => ({
  casBlob: (sha, size) => path.join(dataDir, 'cas', sha.slice(0, 2), sha.slice(2), `${size}.blob`),
  imageStoreFile: (rel) => path.join(dataDir, 'store', ...rel.split('/')),
})

/**
 * Binds the registry to this run: which script each server runs, its environment, and where
 * it stored an upload. `mains` = {a, b}: the Ferry entry points (b may be undefined).
 */
export async function bindServers(names, mains) {
  const distOf = (main) => path.resolve(path.dirname(main), '..')
  const ownDist = path.join(rootDir, 'dist')
  const layouts = {}
  for (const build of ['a', 'b']) {
    if (names.some((n) => serverByName(n).build === build)) {
      layouts[build] = await loadFerryLayout(distOf(mains[build]), ownDist)
    }
  }
  return new Map(
    names.map((name) => {
      const sv = serverByName(name)
      const ferry = sv.proto === 'ferry'
      const script = ferry
        ? mains[sv.build]
        : sv.script && path.join(macroDir, 'servers', sv.script)
      const layoutOf = ferry ? layouts[sv.build] : minimalLayout
      return [
        name,
        {
          ...sv,
          script,
          /** Environment of one instance: Ferry reads FERRY_*, the bench's own servers BENCH_*. */
          env({ port, dataDir, redisUrl, redisPrefix }) {
            const e = ferry
              ? { FERRY_HOST: '127.0.0.1', FERRY_PORT: String(port), FERRY_DATA_DIR: dataDir }
              : { BENCH_HOST: '127.0.0.1', BENCH_PORT: String(port), BENCH_DATA_DIR: dataDir }
            if (sv.redis) Object.assign(e, { REDIS_URL: redisUrl, FERRY_REDIS_PREFIX: redisPrefix })
            return { ...e, ...sv.env }
          },
          /** `(upload) => file` for one data directory; uploads are what macro/load.js reports. */
          storedPaths(dataDir) {
            const l = sv.proto === 'tus' ? null : layoutOf(dataDir)
            return (u) => {
              switch (u.kind) {
                case 'store':
                  return l.imageStoreFile(u.path)
                case 'cas':
                  return l.casBlob(u.sha, u.size)
                // @tus/file-store keeps `<directory>/<id>` (macro/servers/tus.js); Ferry says
                // where.
                case 'tus':
                  return sv.proto === 'tus' ? path.join(dataDir, 'tus', u.id) : l.tusFile(u.id)
              }
              throw new Error(`${name}: unknown upload kind ${u.kind}`)
            }
          },
        },
      ]
    }),
  )
}
