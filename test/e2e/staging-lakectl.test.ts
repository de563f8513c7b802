/**
 * lakectl's `fs upload --pre-sign` flow (treeverse/lakeFS, pkg/api/helpers/upload.go), step
 * by step as the client runs it, against two Ferry instances sharing one Redis and one data
 * directory: config → physical address with presign → PUT to the presigned URL → link with the
 * checksum from Content-MD5 (base64 → hex) or the ETag (quotes stripped).
 */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { createHash } from 'node:crypto'
import { request, seededBytes, type Reply } from '../helpers/http.js'
import { basicAuth, stagingBackingUrl, type StagingLocation } from '../helpers/staging.js'
import {
  removeDir,
  startCluster,
  tempDir,
  type TestCluster,
  type TestServer,
} from '../helpers/server.js'

const BASIC = basicAuth('AKIALAKECTL', 'lakectl-secret')

let cluster: TestCluster<[TestServer, TestServer]>
let a: TestServer
let b: TestServer
let cfgDir: string

beforeAll(async () => {
  cfgDir = tempDir('ferry-lakectl-cfg-')
  const cfg = join(cfgDir, 'ferry.json')
  writeFileSync(
    cfg,
    JSON.stringify({
      lakefs: {
        signingSecret: 'e2e-signing',
        jwtSecret: 'e2e-jwt',
        credentials: [{ accessKeyId: 'AKIALAKECTL', secretAccessKey: 'lakectl-secret' }],
        repositories: [
          { name: 'example', storageNamespace: 'local://example', branches: ['main'] },
        ],
      },
    }),
  )
  cluster = await startCluster(2, { FERRY_CONFIG: cfg }, 'ferry-lakectl-data-')
  ;[a, b] = cluster.servers
})
afterAll(async () => {
  await cluster.close()
  removeDir(cfgDir)
})

const api = (base: string) => `${base}/api/v1`
const backing = (base: string, repo: string, branch: string, path: string) =>
  stagingBackingUrl(base, repo, branch, path)

/** Points a presigned URL at another instance (as a load balancer would). */
const via = (url: string, base: string) => {
  const u = new URL(url)
  const t = new URL(base)
  u.host = t.host
  return u.href
}

interface Staged {
  readonly loc: StagingLocation
  readonly checksum: string
}

/**
 * Steps 1–3 of lakectl: config, address with presign, PUT to the presigned URL, read the checksum.
 */
async function lakectlStage(
  apiBase: string,
  putBase: string,
  path: string,
  data: Buffer,
  contentType: string,
): Promise<Staged> {
  const cfg = await request(`${api(apiBase)}/config`, {
    headers: { Authorization: BASIC, Accept: 'application/json' },
  })
  expect(cfg.status).toBe(200)
  // lakectl: the server's pre_sign_support decides, whatever the flag says.
  expect(
    cfg.json<{
      storage_config: { pre_sign_support: boolean; pre_sign_multipart_upload: boolean }
    }>().storage_config,
  ).toMatchObject({
    pre_sign_support: true,
    // Multipart is offered; lakectl still uploads files under 5 MiB in one PUT (this flow).
    pre_sign_multipart_upload: true,
  })
  const g = await request(`${backing(apiBase, 'example', 'main', path)}&presign=true`, {
    headers: { Authorization: BASIC },
  })
  expect(g.status).toBe(200)
  const loc = g.json<StagingLocation>()
  expect(loc.presigned_url).toEqual(expect.any(String))
  // lakectl sends a body only when size > 0, always Content-Length, Content-Type when known.
  const put = await request(via(loc.presigned_url!, putBase), {
    method: 'PUT',
    headers: { 'Content-Length': data.length, 'Content-Type': contentType },
    ...(data.length > 0 ? { body: data } : {}),
  })
  expect(put.status).toBe(200)
  const etag = String(put.headers['etag'] ?? '').trim()
  expect(etag).not.toBe('') // a missing ETag is a hard error for lakectl
  const contentMd5 = put.headers['content-md5']
  const checksum =
    typeof contentMd5 === 'string'
      ? Buffer.from(contentMd5, 'base64').toString('hex')
      : etag.replace(/"/g, '')
  return { loc, checksum }
}

/** Step 4: link with the whole StagingLocation echoed back. */
function lakectlLink(
  base: string,
  path: string,
  s: Staged,
  size: number,
  contentType: string,
  headers: Record<string, string> = {},
): Promise<Reply> {
  return request(backing(base, 'example', 'main', path), {
    method: 'PUT',
    headers: { Authorization: BASIC, 'Content-Type': 'application/json', ...headers },
    body: JSON.stringify({
      staging: s.loc,
      checksum: s.checksum,
      size_bytes: size,
      user_metadata: {},
      content_type: contentType,
    }),
  })
}

const linkedBytes = (path: string) => {
  const segs = path.split('/')
  const entryFile = join(
    cluster.dataDir,
    'staging',
    'example',
    'branches',
    'main',
    'objects',
    ...segs.map((s, i) => (i === segs.length - 1 ? `${s}.o` : `${s}.d`)),
  )
  const entry = JSON.parse(readFileSync(entryFile, 'utf8')) as { blob: string }
  return readFileSync(join(cluster.dataDir, 'staging', 'example', entry.blob))
}

describe('lakectl fs upload --pre-sign against two instances', () => {
  test('address from A, bytes through B, link on A: 200 and the exact bytes', async () => {
    const data = seededBytes(600_000, 'lakectl-1')
    const s = await lakectlStage(
      a.url,
      b.url,
      'datasets/part-0001.parquet',
      data,
      'application/octet-stream',
    )
    expect(s.checksum).toBe(createHash('md5').update(data).digest('hex'))
    const r = await lakectlLink(
      a.url,
      'datasets/part-0001.parquet',
      s,
      data.length,
      'application/octet-stream',
    )
    expect(r.status).toBe(200)
    expect(r.json()).toMatchObject({
      path: 'datasets/part-0001.parquet',
      path_type: 'object',
      checksum: s.checksum,
      size_bytes: data.length,
      physical_address: s.loc.physical_address,
    })
    expect(linkedBytes('datasets/part-0001.parquet').equals(data)).toBe(true)
  })

  test('the ETag route (no Content-MD5 read) and an empty file work too', async () => {
    const data = Buffer.from('a,b\n1,2\n')
    const s = await lakectlStage(b.url, a.url, 'csv/small.csv', data, 'text/csv')
    const fromEtag = { ...s, checksum: createHash('md5').update(data).digest('hex') }
    const r = await lakectlLink(b.url, 'csv/small.csv', fromEtag, data.length, 'text/csv')
    expect(r.status).toBe(200)
    expect(r.json<{ content_type: string }>().content_type).toBe('text/csv')
    const e = await lakectlStage(
      a.url,
      a.url,
      'empty/zero',
      Buffer.alloc(0),
      'application/octet-stream',
    )
    expect(e.checksum).toBe('d41d8cd98f00b204e9800998ecf8427e')
    expect((await lakectlLink(b.url, 'empty/zero', e, 0, 'application/octet-stream')).status).toBe(
      200,
    )
    expect(linkedBytes('empty/zero').length).toBe(0)
  })

  test("If-None-Match: * racing from both instances: exactly one 200 and one 412, the winner's bytes stay", async () => {
    for (let round = 0; round < 8; round++) {
      const path = `race/${round}/obj.bin`
      const da = seededBytes(40_000, `race-a-${round}`)
      const db = seededBytes(40_000, `race-b-${round}`)
      const [sa, sb] = await Promise.all([
        lakectlStage(a.url, a.url, path, da, 'application/octet-stream'),
        lakectlStage(b.url, b.url, path, db, 'application/octet-stream'),
      ])
      const [ra, rb] = await Promise.all([
        lakectlLink(a.url, path, sa, da.length, 'application/octet-stream', {
          'If-None-Match': '*',
        }),
        lakectlLink(b.url, path, sb, db.length, 'application/octet-stream', {
          'If-None-Match': '*',
        }),
      ])
      expect([ra.status, rb.status].sort()).toEqual([200, 412])
      const loser = ra.status === 412 ? ra : rb
      expect(loser.json()).toEqual({ message: 'Precondition failed' })
      expect(linkedBytes(path).equals(ra.status === 200 ? da : db)).toBe(true)
    }
  })
})
