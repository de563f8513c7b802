/**
 * How a family turns the core's UploadError into its own body: the core's typed `detail` (facts
 * every family may use) and each family's own typed fields (`defineRefusals`). The bodies below
 * are the bytes each API answered before these were typed; the `@ts-expect-error` lines are
 * checked by the build: a field of the wrong type or of another family does not compile.
 */
import { describe, expect, test } from '@jest/globals'
import { pino } from 'pino'
import { UploadError } from '../../src/core/errors.js'
import { bearerRefusals } from '../../src/http/auth/bearer.js'
import type { RequestContext } from '../../src/http/context.js'
import { defineRefusals } from '../../src/http/errors.js'
import { fabricRefusals, sendImageStoreError } from '../../src/http/imagestore/errors.js'
import { ingestRefusals, sendIngestError } from '../../src/http/ingest/errors.js'
import { sendShamanError } from '../../src/http/shaman/errors.js'
import { s3Refusals, sendLakeFsError, sendS3Error } from '../../src/http/staging/errors.js'

interface Sent {
  status: number
  headers: Record<string, string | number>
  body: string
}

/** A request context whose response records what a family's error writer sends. */
function recorder(): { ctx: RequestContext; sent: () => Sent } {
  let sent: Sent | null = null
  const own: Record<string, string> = {}
  const res = {
    req: { method: 'POST' },
    headersSent: false,
    hasHeader: (k: string) => k.toLowerCase() in own,
    setHeader: (k: string, v: string) => {
      own[k.toLowerCase()] = v
    },
    writeHead(status: number, headers: Record<string, string | number> = {}) {
      sent = { status, headers: { ...own, ...headers }, body: '' }
    },
    end(body?: string) {
      sent!.body = body ?? ''
    },
  }
  const req = { method: 'POST', complete: true, headers: {} }
  const ctx = { req, res, reqId: 'req-1', log: pino({ level: 'silent' }), rawPath: '/' }
  return { ctx: ctx as unknown as RequestContext, sent: () => sent! }
}

function answer(send: (ctx: RequestContext, err: unknown) => void, err: unknown): Sent {
  const r = recorder()
  send(r.ctx, err)
  return r.sent()
}

describe('family fields (defineRefusals)', () => {
  test('an UploadError like any other; only its own set reads its fields back', () => {
    const a = defineRefusals<{ readonly n: number }>()
    const b = defineRefusals<{ readonly n: number }>()
    const cause = new Error('under')
    const err = a.error('ERR_INVALID_ARGUMENT', 'bad', { n: 1 }, { cause })
    expect(err).toBeInstanceOf(UploadError)
    expect([err.code, err.message, err.cause, err.detail]).toEqual([
      'ERR_INVALID_ARGUMENT',
      'bad',
      cause,
      null,
    ])
    expect(a.fieldsOf(err)).toEqual({ n: 1 })
    expect(b.fieldsOf(err)).toBeNull()
    expect(a.fieldsOf(new UploadError('ERR_INVALID_ARGUMENT', 'bad'))).toBeNull()
  })

  test('fields and details are typed (checked by the build)', () => {
    const checks = () => {
      // @ts-expect-error a Fabric code the runtime does not have
      fabricRefusals.error('ERR_INVALID_ARGUMENT', 'm', { fabricCode: 'E_NOPE' })
      // @ts-expect-error an S3 code the presigned PUT does not name itself
      s3Refusals.error('ERR_FORBIDDEN', 'm', { s3Code: 'NoSuchKey' })
      // @ts-expect-error an ingest argument needs its reason
      ingestRefusals.error('ERR_INVALID_ARGUMENT', 'm', { kind: 'argument', argument: 'a' })
      // @ts-expect-error the untyped bag is gone
      new UploadError('ERR_BODY_TOO_LARGE', 'm', { details: { maxBytes: 1 } })
      // @ts-expect-error a detail must be complete
      new UploadError('ERR_BODY_TOO_LARGE', 'm', { detail: { kind: 'limit' } })
      const detail = { kind: 'not-found', resource: 'project', id: 'x' } as const
      const e = new UploadError('ERR_NOT_FOUND', 'm', { detail })
      // @ts-expect-error only `not-found` details have an id, and only after narrowing
      void e.detail?.id
      if (e.detail?.kind === 'not-found') void e.detail.id
    }
    expect(typeof checks).toBe('function')
  })
})

describe('bodies of decorated errors, byte for byte', () => {
  test("ImageStore: a session-id refusal with its own Fabric code, else the table's", () => {
    const own = fabricRefusals.error('ERR_INVALID_ARGUMENT', 'session-id is required', {
      fabricCode: 'FABRIC_E_INVALID_UPLOAD_SESSION_ID',
    })
    expect(answer(sendImageStoreError, own)).toMatchObject({
      status: 400,
      body:
        '{"Error":{"Code":"FABRIC_E_INVALID_UPLOAD_SESSION_ID",' +
        '"Message":"session-id is required"}}',
    })
    const plain = new UploadError('ERR_INVALID_ARGUMENT', 'session-id is required')
    expect(answer(sendImageStoreError, plain).body).toBe(
      '{"Error":{"Code":"E_INVALIDARG","Message":"session-id is required"}}',
    )
  })

  test('a bearer refusal: its challenge in ImageStore and Shaman bodies', () => {
    const err = bearerRefusals.error('ERR_UNAUTHORIZED', 'token rejected', {
      challenge: 'Bearer realm="ferry", error="invalid_token"',
    })
    const is = answer(sendImageStoreError, err)
    const fabric401 = '{"Error":{"Code":"E_ACCESSDENIED","Message":"token rejected"}}'
    expect(is).toMatchObject({ status: 401, body: fabric401 })
    expect(is.headers['WWW-Authenticate']).toBe('Bearer realm="ferry", error="invalid_token"')
    const sh = answer(sendShamanError, err)
    expect(sh).toMatchObject({ status: 401, body: '{"code":401,"message":"token rejected"}' })
    expect(sh.headers['WWW-Authenticate']).toBe('Bearer realm="ferry", error="invalid_token"')
    // Without the family's fields: the challenge of a request that sent no token.
    const bare = answer(sendShamanError, new UploadError('ERR_UNAUTHORIZED', 'no token'))
    expect(bare.headers['WWW-Authenticate']).toBe('Bearer realm="ferry"')
  })

  test('presigned PUT: the S3 code named by the refusal, else by code and status', () => {
    const s3Code = 'SignatureDoesNotMatch'
    const mismatch = s3Refusals.error('ERR_FORBIDDEN', 'sig & co', { s3Code })
    expect(answer(sendS3Error, mismatch)).toMatchObject({
      status: 403,
      body:
        '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SignatureDoesNotMatch</Code>' +
        '<Message>sig &#38; co</Message><RequestId>req-1</RequestId></Error>',
    })
    const plain = answer(sendS3Error, new UploadError('ERR_FORBIDDEN', 'no'))
    expect(plain.body).toContain('<Code>AccessDenied</Code>')
    const digest = answer(sendS3Error, new UploadError('ERR_CHECKSUM_MISMATCH', 'md5'))
    expect(digest.body).toContain('<Code>BadDigest</Code>')
    // The lakeFS routes ignore S3 fields: {message} as always.
    const lakefs = answer(sendLakeFsError, mismatch)
    expect(lakefs).toMatchObject({ status: 403, body: '{"message":"sig & co"}\n' })
  })

  test("bulk ingest: argument text, challenge header, and the core's not-found facts", () => {
    const arg = ingestRefusals.error('ERR_INVALID_ARGUMENT', 'invalid shortcode', {
      kind: 'argument',
      argument: "Path variable: 'shortcode'",
      reason: "'zz' is not a project shortcode",
    })
    expect(answer(sendIngestError, arg)).toMatchObject({
      status: 400,
      body:
        '{"errors":[{"argument":"Path variable: \'shortcode\'",' +
        '"reason":"\'zz\' is not a project shortcode"}]}',
    })
    const missing = ingestRefusals.error('ERR_UNAUTHORIZED', 'Missing header', {
      kind: 'challenge',
    })
    const challenged = answer(sendIngestError, missing)
    expect(challenged).toMatchObject({ status: 401, body: '{"reason":"Missing header"}' })
    expect(challenged.headers['WWW-Authenticate']).toBe('Bearer')
    const scope = answer(sendIngestError, new UploadError('ERR_UNAUTHORIZED', 'No project access.'))
    expect(scope.headers['WWW-Authenticate']).toBeUndefined()
    const folder = new UploadError('ERR_NOT_FOUND', 'no import folder', {
      detail: { kind: 'not-found', resource: 'import-folder', id: '0001' },
    })
    expect(answer(sendIngestError, folder)).toMatchObject({
      status: 404,
      body: '{"id":"0001","type":"Import folder not found."}',
    })
    // Another family's fields mean nothing here: the generic BadRequest entry.
    const foreign = fabricRefusals.error('ERR_INVALID_ARGUMENT', 'm', {
      fabricCode: 'E_INVALIDARG',
    })
    expect(answer(sendIngestError, foreign).body).toBe(
      '{"errors":[{"argument":"Request","reason":"m"}]}',
    )
  })
})
