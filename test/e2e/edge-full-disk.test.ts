/**
 * Issue 9 item 3 (the HTTP edge): a full disk is answered 507 Insufficient Storage with each
 * family's own error body and a Retry-After header, never 500; /readyz says the disk is short of
 * space; once space is freed the same requests succeed. The disk is real: a 4 MiB tmpfs mounted as
 * the data directory and filled to the last byte (this needs root; the suite runs as root).
 */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals'
import { execFileSync } from 'node:child_process'
import { closeSync, mkdtempSync, openSync, rmSync, rmdirSync, writeSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import {
  BASIC_AUTH,
  SHA_OF_64_X,
  familyErrorProblem,
  ingestToken,
  presignedTarget,
  writeFamiliesConfig,
  type FamilyName,
} from '../helpers/edge-families.js'
import { startEdge, type EdgeServer } from '../helpers/edge-server.js'
import { request, type Reply } from '../helpers/http.js'
import { removeDir, tempDir } from '../helpers/server.js'

const ROOT_NEEDED =
  'this test mounts a tmpfs as a full disk and needs root: run `npm test` as root (or `sudo mount -t tmpfs` must be possible)'

let mnt: string
let cfgDir: string
let srv: EdgeServer
let mounted = false

function fillDisk(dir: string): string {
  const file = join(dir, 'filler')
  const fd = openSync(file, 'w')
  try {
    for (const size of [1024 * 1024, 64 * 1024, 4096, 1]) {
      const buf = Buffer.alloc(size, 1)
      for (;;) {
        try {
          writeSync(fd, buf)
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code === 'ENOSPC') break
          throw err
        }
      }
    }
  } finally {
    closeSync(fd)
  }
  return file
}

beforeAll(async () => {
  if (process.getuid?.() !== 0) throw new Error(ROOT_NEEDED)
  mnt = mkdtempSync(join(tmpdir(), 'ferry-fulldisk-'))
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=4m', 'tmpfs', mnt])
  mounted = true
  cfgDir = tempDir('ferry-fulldisk-cfg-')
  srv = await startEdge({
    FERRY_DATA_DIR: mnt,
    FERRY_CONFIG: writeFamiliesConfig(cfgDir),
    FERRY_READY_MIN_FREE_BYTES: String(512 * 1024),
  })
})
afterAll(async () => {
  await srv?.close()
  if (mounted) {
    execFileSync('umount', ['-l', mnt])
    rmdirSync(mnt)
  }
  if (cfgDir) removeDir(cfgDir)
})

const body = Buffer.alloc(64, 'x')

async function uploads(): Promise<{ family: FamilyName; name: string; reply: Reply }[]> {
  const u = srv.url
  const bearer = { Authorization: `Bearer ${await ingestToken()}` }
  const guid = crypto.randomUUID()
  const out: { family: FamilyName; name: string; reply: Reply }[] = []
  out.push({
    family: 'imagestore',
    name: 'whole-file PUT',
    reply: await request(`${u}/ImageStore/full/a.bin?api-version=6.0`, { method: 'PUT', body }),
  })
  out.push({
    family: 'imagestore',
    name: 'UploadChunk',
    reply: await request(
      `${u}/ImageStore/full/b.bin/$/UploadChunk?api-version=6.0&session-id=${guid}`,
      { method: 'PUT', body, headers: { 'Content-Range': 'bytes 0-63/64' } },
    ),
  })
  out.push({
    family: 'shaman',
    name: 'file upload',
    reply: await request(`${u}/api/v3/shaman/files/${SHA_OF_64_X}/64`, { method: 'POST', body }),
  })
  out.push({
    family: 's3',
    name: 'presigned PUT',
    reply: await request(`${u}${await presignedTarget(u)}`, { method: 'PUT', body }),
  })
  out.push({
    family: 'ingest',
    name: 'upload',
    reply: await request(`${u}/projects/0a0b/bulk-ingest/ingest/${guid}.txt`, {
      method: 'POST',
      body,
      headers: bearer,
    }),
  })
  return out
}

describe('a full disk (4 MiB tmpfs as the data directory)', () => {
  let staged: { address: string; md5: string } | null = null
  let filler = ''

  test('with space: /readyz 200; a lakeFS upload is staged for the link below', async () => {
    expect((await request(`${srv.url}/readyz`)).status).toBe(200)
    const target = await presignedTarget(srv.url, 'full/linked.bin')
    const put = await request(`${srv.url}${target}`, { method: 'PUT', body })
    expect(put.status).toBe(200)
    const path = decodeURIComponent(target.split('/_ferry/presigned/repo1/')[1]!.split('?')[0]!)
    staged = {
      address: `local://repo1/${path}`,
      md5: String(put.headers['etag']).replace(/"/g, ''),
    }
  })

  test('filled to the last byte: every family answers 507 with its own error body and Retry-After; /readyz 503 names the disk', async () => {
    filler = fillDisk(mnt)
    for (const { family, name, reply } of await uploads()) {
      const a = {
        status: reply.status,
        headers: reply.headers as Record<string, string>,
        body: reply.body,
      }
      expect([name, familyErrorProblem(family, a, [507])]).toEqual([name, null])
      expect([name, reply.headers['retry-after']]).toEqual([name, expect.stringMatching(/^\d+$/)])
    }
    // lakeFS JSON API: the link writes the branch entry.
    const link = await request(
      `${srv.url}/api/v1/repositories/repo1/branches/main/staging/backing?path=full/linked.bin`,
      {
        method: 'PUT',
        headers: { Authorization: BASIC_AUTH, 'Content-Type': 'application/json' },
        body: JSON.stringify({
          staging: { physical_address: staged!.address },
          checksum: staged!.md5,
          size_bytes: 64,
        }),
      },
    )
    expect([
      link.status,
      familyErrorProblem('lakefs', { status: link.status, headers: {}, body: link.body }, [507]),
    ]).toEqual([507, null])
    expect(link.headers['retry-after']).toMatch(/^\d+$/)
    const ready = await request(`${srv.url}/readyz`)
    expect(ready.status).toBe(503)
    expect(ready.headers['retry-after']).toMatch(/^\d+$/)
    expect(ready.json<{ reasons: string[] }>().reasons.join(' ')).toMatch(
      /data directory has \d+ bytes free/,
    )
    expect((await request(`${srv.url}/healthz`)).status).toBe(200)
  })

  test('space freed: the same requests succeed and /readyz is 200 again', async () => {
    rmSync(filler)
    for (const { name, reply } of await uploads())
      expect([name, reply.status < 300]).toEqual([name, true])
    expect((await request(`${srv.url}/readyz`)).status).toBe(200)
  })
})
