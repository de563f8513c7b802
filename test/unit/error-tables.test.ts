/**
 * Every family maps EVERY core error code to an HTTP error status (a new code in the catalogue
 * fails here until each family has decided on it), and the shared first step of their error
 * answers picks that status and logs at the right level.
 */
import { describe, expect, test } from '@jest/globals'
import { Writable } from 'node:stream'
import { pino } from 'pino'
import { ERROR_CODES, UploadError, type ErrorCode } from '../../src/core/errors.js'
import { classifyFailure } from '../../src/http/errors.js'
import { IMAGESTORE_ERRORS } from '../../src/http/imagestore/errors.js'
import { INGEST_STATUS } from '../../src/http/ingest/errors.js'
import { SHAMAN_STATUS } from '../../src/http/shaman/errors.js'
import { LAKEFS_STATUS } from '../../src/http/staging/errors.js'
import { TUS_STATUS } from '../../src/http/tus/errors.js'

const imagestoreStatus = Object.fromEntries(
  Object.entries(IMAGESTORE_ERRORS).map(([code, [status]]) => [code, status]),
)

const families: {
  family: string
  table: Readonly<Record<string, number>>
  only?: readonly number[]
}[] = [
  { family: 'ImageStore', table: imagestoreStatus },
  { family: 'Shaman', table: SHAMAN_STATUS },
  { family: 'lakeFS', table: LAKEFS_STATUS },
  // dsp-ingest has a body for these statuses only (ingestErrorBody).
  {
    family: 'bulk-ingest',
    table: INGEST_STATUS,
    only: [400, 401, 404, 408, 409, 413, 500, 503, 507],
  },
  // 499: a client that went away is logged and gets no answer.
  { family: 'tus', table: TUS_STATUS },
]

describe.each(families)('$family error table', ({ table, only }) => {
  test('maps every core error code, and nothing else, to a 4xx/5xx status', () => {
    expect(Object.keys(table).sort()).toEqual([...ERROR_CODES].sort())
    for (const [code, status] of Object.entries(table)) {
      expect([code, Number.isInteger(status) && status >= 400 && status < 600]).toEqual([
        code,
        true,
      ])
      if (only) expect([code, only.includes(status)]).toEqual([code, true])
    }
  })
})

describe('classifyFailure', () => {
  const capture = () => {
    const lines: { level: number; msg: string; err?: { stack?: string }; code?: string }[] = []
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        lines.push(JSON.parse(chunk.toString()))
        done()
      },
    })
    return { lines, ctx: { log: pino({ level: 'info' }, sink) } }
  }
  const statusOf = (code: ErrorCode) => (code === 'ERR_IO' ? 500 : 400)

  test('a 4xx UploadError: its table status, one brief info line without a stack', () => {
    const { lines, ctx } = capture()
    const err = new UploadError('ERR_INVALID_PATH', 'bad path')
    expect(classifyFailure(ctx, err, statusOf, 'x request')).toEqual({ status: 400, error: err })
    expect(lines).toHaveLength(1)
    expect(lines[0]).toMatchObject({
      level: 30,
      msg: 'x request refused',
      code: 'ERR_INVALID_PATH',
    })
    expect(lines[0]!.err).toBeUndefined()
  })

  test('a 5xx UploadError: its table status, logged as an error with the stack', () => {
    const { lines, ctx } = capture()
    const err = new UploadError('ERR_IO', 'disk gone')
    expect(classifyFailure(ctx, err, statusOf, 'x request')).toEqual({ status: 500, error: err })
    expect(lines).toHaveLength(1)
    expect(lines[0]).toMatchObject({ level: 50, msg: 'x request failed' })
    expect(lines[0]!.err?.stack).toContain('disk gone')
  })

  test('anything else: 500 with no error to answer from, logged as an error with the stack', () => {
    const { lines, ctx } = capture()
    expect(classifyFailure(ctx, new TypeError('secret internals'), statusOf, 'x request')).toEqual({
      status: 500,
      error: null,
    })
    expect(lines).toHaveLength(1)
    expect(lines[0]).toMatchObject({ level: 50, msg: 'x request failed' })
    expect(lines[0]!.err?.stack).toContain('secret internals')
  })
})
