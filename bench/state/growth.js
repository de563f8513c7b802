// State cost per chunk as a session grows (issue 17.9): journal bytes and per-chunk latency of the
// embedded store, document size of the Redis store, for N one-byte chunks.
//
// node bench/state/growth.js [--dist DIR] [--chunks 16000] [--pattern scattered|sequential]
// [--redis-url URL]
//
// `scattered` writes chunk i at offset 2i (every chunk a new separate range: the worst case a
// client can make); `sequential` at offset i. Run it against two builds (--dist) to compare.
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { pathToFileURL } from 'node:url'

const { values: a } = parseArgs({
  options: {
    dist: { type: 'string', default: 'dist' },
    chunks: { type: 'string', default: '16000' },
    pattern: { type: 'string', default: 'scattered' },
    'redis-url': { type: 'string' },
  },
})
const n = Number(a.chunks)
const dist = resolve(a.dist)
const { createEmbeddedState } = await import(
  pathToFileURL(join(dist, 'src/core/state/embedded.js')).href
)
const { createRedisState } = await import(pathToFileURL(join(dist, 'src/core/state/redis.js')).href)

const offset = (i) => (a.pattern === 'scattered' ? 2 * i : i)

/** Bytes this process has written with write(2) and friends so far (/proc/self/io wchar). */
const written = () => Number(/wchar: (\d+)/.exec(readFileSync('/proc/self/io', 'utf8'))[1])

async function drive(state, journal) {
  const w0 = written()
  const key = `g:${Date.now()}`
  const now = Date.now()
  await state.sessions.open(
    { key, incarnation: 'i', target: 't', totalBytes: 2 * n + 2, tempName: 'x.part' },
    now,
  )
  const lat = []
  let refused = 0
  for (let i = 0; i < n; i++) {
    const t0 = performance.now()
    const r = { start: offset(i), end: offset(i) }
    const got = await state.sessions.reserve(key, r, `t${i}`, Date.now(), 60_000)
    if (got.status === 'reserved') await state.sessions.complete(key, `t${i}`, Date.now())
    else refused++
    lat.push(performance.now() - t0)
  }
  const med = (xs) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)]
  const k = Math.min(1000, Math.floor(n / 4))
  return {
    firstMs: +med(lat.slice(0, k)).toFixed(3),
    lastMs: +med(lat.slice(-k)).toFixed(3),
    refused,
    journalBytes: journal ? statSync(journal).size : undefined,
    // Everything appended to the journal on the way (compactions shrink the file itself).
    writtenBytes: journal ? written() - w0 : undefined,
  }
}

const dir = mkdtempSync(join(tmpdir(), 'ferry-growth-'))
try {
  const emb = createEmbeddedState(join(dir, 'state'))
  const e = await drive(emb, join(dir, 'state', 'sessions.journal'))
  await emb.close()
  console.log(JSON.stringify({ dist, backend: 'embedded', pattern: a.pattern, chunks: n, ...e }))
  if (a['redis-url']) {
    const red = await createRedisState(a['redis-url'], `growth${Date.now()}:`)
    const r = await drive(red)
    await red.close()
    console.log(JSON.stringify({ dist, backend: 'redis', pattern: a.pattern, chunks: n, ...r }))
  }
} finally {
  rmSync(dir, { recursive: true, force: true })
}
