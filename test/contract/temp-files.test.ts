/**
 * TempFiles declares every temp name and its orphan rule. Two promises are checked here: the
 * names are the on-disk names (data directories and crash tests depend on them), and the rules
 * judge a tmp/ folder as the table in temp-files.ts spells out, with the uploads sweep (which
 * decides by `isOrphan`) removing exactly what they judge, on a real server.
 */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals'
import { randomUUID } from 'node:crypto'
import { mkdirSync, readdirSync, statSync, utimesSync, writeFileSync } from 'node:fs'
import { basename, join } from 'node:path'
import { Readable } from 'node:stream'
import {
  handoffTempName,
  isOrphan,
  parseTempName,
  sessionTempName,
  TEMP_GRACE_MS,
  TempFiles,
} from '../../src/core/storage/temp-files.js'
import { removeDir, startFerry, type TestServer } from '../helpers/server.js'

describe('temp names', () => {
  const id = '0b7c6d1e-2f3a-4b5c-8d9e-0f1a2b3c4d5e'

  test('session and hand-off names: the key in base64url, then the incarnation or owner', () => {
    expect(sessionTempName('imagestore:a/b é', id)).toBe(`s-aW1hZ2VzdG9yZTphL2Igw6k.${id}.part`)
    expect(handoffTempName('imagestore:x', id)).toBe(`p-aW1hZ2VzdG9yZTp4.${id}.part`)
    const session = parseTempName(sessionTempName('k:é/?', id))
    expect(session).toEqual({ kind: 'session', key: 'k:é/?', incarnation: id })
    const handoff = parseTempName(handoffTempName('k', id))
    expect(handoff).toEqual({ kind: 'handoff', key: 'k', owner: id })
  })

  test('TempFiles makes w-, c-, i-, d- names in its folder, each parsed back to its kind', () => {
    const t = new TempFiles('/data/tmp', id)
    const stream = t.streamPath()
    expect(stream).toMatch(new RegExp(`^/data/tmp/w-${id}\\.[0-9a-f-]{36}\\.part$`))
    expect(parseTempName(basename(stream))).toEqual({ kind: 'stream', instance: id })
    expect(t.copyPath()).toMatch(/^\/data\/tmp\/c-[0-9a-f-]{36}\.part$/)
    expect(parseTempName(basename(t.copyPath()))).toEqual({ kind: 'copy' })
    expect(parseTempName(basename(t.ingestPath()))).toEqual({ kind: 'ingest' })
    expect(parseTempName(basename(t.trashPath()))).toEqual({ kind: 'trash' })
    expect(t.sessionPath('k', id)).toBe(`/data/tmp/${sessionTempName('k', id)}`)
    expect(t.handoffPath('k', id)).toBe(`/data/tmp/${handoffTempName('k', id)}`)
    for (const other of ['w-1.part', 's-.part', 'leftover.tmp', `x-${id}.part`]) {
      expect(parseTempName(other)).toBeNull()
    }
  })
})

describe('orphan rules agree with the sweep of uploads.ts', () => {
  const TTL_SEC = 600
  let srv: TestServer
  beforeAll(async () => {
    srv = await startFerry({ FERRY_SESSION_TTL_SEC: String(TTL_SEC) })
  })
  afterAll(async () => {
    await srv.close()
    removeDir(srv.dataDir)
  })

  test('names uploads.ts makes are the ones TempFiles declares', async () => {
    const { uploads, state } = srv.app.engine
    const key = `imagestore:${randomUUID()}`
    const body = Readable.from([Buffer.from('12345')])
    const range = { start: 0, end: 4 }
    const r = await uploads.writeChunk({ key, target: 'n.bin', totalBytes: 10, range, body })
    expect(r.session.tempName).toBe(sessionTempName(key, r.session.incarnation))
    const stream = uploads.streamTempPath()
    expect(parseTempName(basename(stream))).toEqual({ kind: 'stream', instance: state.instanceId })
    await uploads.discard(stream)
    expect(await uploads.abort(key)).toBe(true)
  })

  test('every kind of leftover in tmp/: isOrphan judges as sweep removes', async () => {
    const { uploads, state, layout } = srv.app.engine
    const tmp = layout.tmp
    const now = Date.now()
    const ttlMs = TTL_SEC * 1000
    const past = (ms: number) => new Date(now - ms)
    const recent = 2 * TEMP_GRACE_MS // past the grace, well within the TTL
    const stale = ttlMs + 60_000
    const key = `imagestore:${randomUUID()}`
    const r = await uploads.writeChunk({
      key,
      target: 'live.bin',
      totalBytes: 10,
      range: { start: 0, end: 4 },
      body: Readable.from([Buffer.from('12345')]),
    })
    const temps = new TempFiles(tmp, state.instanceId)
    const streaming = uploads.streamTempPath()
    writeFileSync(streaming, 'in use')
    const made: Record<string, { age: number; dir?: boolean; path?: string }> = {
      [r.session.tempName]: { age: recent },
      [sessionTempName(key, randomUUID())]: { age: recent },
      [sessionTempName('imagestore:gone', randomUUID())]: { age: recent },
      [sessionTempName('imagestore:young', randomUUID())]: { age: 10_000 },
      [handoffTempName(key, randomUUID())]: { age: recent },
      [basename(temps.streamPath())]: { age: recent },
      [basename(new TempFiles(tmp, randomUUID()).streamPath())]: { age: recent },
      [basename(streaming)]: { age: recent },
      [basename(temps.copyPath())]: { age: recent },
      [basename(temps.copyPath())]: { age: stale },
      [basename(temps.ingestPath())]: { age: stale },
      [basename(temps.trashPath())]: { age: stale, dir: true },
      [basename(temps.trashPath())]: { age: recent, dir: true },
      'leftover.tmp': { age: stale },
      'fresh-leftover.tmp': { age: recent },
    }
    for (const [name, m] of Object.entries(made)) {
      const p = join(tmp, name)
      if (m.dir) mkdirSync(p)
      else if (name !== r.session.tempName && p !== streaming) writeFileSync(p, 'x')
      utimesSync(p, past(m.age), past(m.age))
    }
    const judged: string[] = []
    for (const name of Object.keys(made)) {
      const p = join(tmp, name)
      const orphan = await isOrphan(name, p, statSync(p), {
        nowMs: now,
        ttlMs,
        instanceId: state.instanceId,
        isStreaming: (path) => path === streaming,
        isAlive: (id) => state.isAlive(id),
        session: (k) => state.sessions.get(k),
      })
      if (orphan) judged.push(name)
    }
    // What the table in temp-files.ts says, spelled out.
    const expected = Object.keys(made).filter((n) => {
      const m = made[n]!
      if (n === r.session.tempName || n === basename(streaming)) return false
      const byAge = m.dir || n.startsWith('c-') || n.startsWith('i-') || n.endsWith('leftover.tmp')
      if (byAge) return m.age > ttlMs
      return m.age > TEMP_GRACE_MS
    })
    expect(judged.length).toBeGreaterThan(8)
    expect(judged.sort()).toEqual(expected.sort())
    const before = new Set(readdirSync(tmp))
    await uploads.sweep(now)
    const removed = [...before].filter((n) => !readdirSync(tmp).includes(n))
    expect(removed.sort()).toEqual(judged.sort())
    await uploads.discard(streaming)
    expect(await uploads.abort(key)).toBe(true)
  })
})
