/**
 * Issue 9 items 3 and 5 (the edge's part): every family answers a full disk 507 and an outage 503
 * in its own error body with `Retry-After`, whatever form the failure reached the edge in: the
 * core's ERR_INSUFFICIENT_STORAGE / ERR_UNAVAILABLE, a raw ENOSPC or EDQUOT from node:fs, or an
 * ERR_IO caused by one. Those are logged at warn without a stack. Each family's real `sendError`
 * answers on a real HTTP server.
 */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { UploadError } from '../../src/core/errors.js'
import type { RequestContext } from '../../src/http/context.js'
import { sendImageStoreError } from '../../src/http/imagestore/errors.js'
import { sendIngestError } from '../../src/http/ingest/errors.js'
import { sendShamanError } from '../../src/http/shaman/errors.js'
import { sendLakeFsError, sendS3Error } from '../../src/http/staging/errors.js'
import { familyErrorProblem, type FamilyName } from '../helpers/edge-families.js'
import { captureLog, type CapturedLog } from '../helpers/edge-server.js'
import { request } from '../helpers/http.js'

const SENDERS: Record<FamilyName, (ctx: RequestContext, err: unknown) => void> = {
  imagestore: sendImageStoreError,
  shaman: sendShamanError,
  lakefs: sendLakeFsError,
  s3: sendS3Error,
  ingest: sendIngestError,
}

const errno = (code: string) =>
  Object.assign(new Error(`${code}: no space left on device, write`), {
    code,
    errno: -28,
    syscall: 'write',
  })
const FAILURES: Record<string, () => unknown> = {
  ERR_INSUFFICIENT_STORAGE: () => new UploadError('ERR_INSUFFICIENT_STORAGE', 'disk full'),
  'raw ENOSPC': () => errno('ENOSPC'),
  'raw EDQUOT': () => errno('EDQUOT'),
  'ERR_IO caused by ENOSPC': () =>
    new UploadError('ERR_IO', 'write failed', { cause: errno('ENOSPC') }),
  ERR_UNAVAILABLE: () => new UploadError('ERR_UNAVAILABLE', 'the state store is unreachable'),
}

let server: Server
let base: string
let log: CapturedLog

beforeAll(async () => {
  log = captureLog('debug')
  server = createServer((req, res) => {
    const u = new URL(req.url ?? '/', 'http://x')
    const family = u.searchParams.get('family') as FamilyName
    const failure = FAILURES[u.searchParams.get('failure') ?? '']!()
    const ctx: RequestContext = {
      req,
      res,
      url: u,
      rawPath: u.pathname,
      reqId: 'r1',
      log: log.logger,
      signal: new AbortController().signal,
    }
    SENDERS[family](ctx, failure)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()))
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
})
afterAll(async () => {
  await new Promise((resolve) => server.close(resolve))
})

const table = (Object.keys(SENDERS) as FamilyName[]).flatMap((f) =>
  Object.keys(FAILURES).map((k) => [f, k] as const),
)

describe('507 and 503 answers', () => {
  test.each(table)(
    "%s, %s: the status, the family's body, Retry-After, a warn line without stack",
    async (family, failure) => {
      const before = log.lines.length
      const r = await request(`${base}/?family=${family}&failure=${encodeURIComponent(failure)}`)
      const status = failure === 'ERR_UNAVAILABLE' ? 503 : 507
      expect(
        familyErrorProblem(family, { status: r.status, headers: {}, body: r.body }, [status]),
      ).toBeNull()
      expect(r.headers['retry-after']).toMatch(/^[1-9]\d*$/)
      const lines = log.lines.slice(before)
      expect(lines.map((l) => l['level'])).toEqual([40])
      expect(JSON.stringify(lines)).not.toContain('"stack"')
    },
  )
})
