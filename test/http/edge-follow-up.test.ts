/**
 * A request refused before its body was read (here: a malformed multipart part header) must not
 * leave its keep-alive connection stuck: the next request on it is answered (found by the fuzz
 * suite with --follow-up; before the edge fix it hung until the idle timeout).
 */
import { afterAll, beforeAll, expect, test } from '@jest/globals'
import { connect } from 'node:net'
import { writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { removeDir, startFerry, tempDir, type TestServer } from '../helpers/server.js'

let srv: TestServer
beforeAll(async () => {
  srv = await startFerry()
})
afterAll(async () => {
  await srv.close()
  removeDir(srv.dataDir)
})

test('the next request on a connection whose body was refused early is answered', async () => {
  const port = Number(new URL(srv.url).port)
  const body = Buffer.concat([
    Buffer.from('--XB\r\nContent-Disposition: form-data; name="file"; filename="a"\r\nX: y'),
    Buffer.alloc(1024 * 1024, 0x61),
    Buffer.from('\r\n--XB--\r\n'),
  ])
  const s = connect(port, '127.0.0.1')
  let got = ''
  s.on('data', (d: Buffer) => (got += d.toString('latin1')))
  s.on('error', () => {})
  s.write(`PUT /ImageStore/a.bin?api-version=6.0 HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=XB\r\nContent-Length: ${body.length}\r\n\r\n`)
  s.write(body)
  s.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n')
  const until = Date.now() + 5000
  while (Date.now() < until && !(s.destroyed || /"status":"ok"/.test(got))) await new Promise((r) => setTimeout(r, 20))
  s.destroy()
  expect(got.startsWith('HTTP/1.1 400')).toBe(true)
  // Either the second request is answered, or the server closed the connection (never a hang).
  expect(/"status":"ok"/.test(got) || s.readableEnded).toBe(true)
})

test('a request carrying Connection: upgrade is answered and its connection closed, never left hanging', async () => {
  const port = Number(new URL(srv.url).port)
  const s = connect(port, '127.0.0.1')
  let got = ''
  let closed = false
  s.on('data', (d: Buffer) => (got += d.toString('latin1')))
  s.on('close', () => (closed = true))
  s.on('error', () => {})
  const body = Buffer.alloc(4096, 0x61)
  s.write(`GET /ImageStore/a.bin?api-version=6.0 HTTP/1.1\r\nHost: x\r\nContent-Length: ${body.length}\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n`)
  s.write(body)
  s.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n')
  const until = Date.now() + 5000
  while (Date.now() < until && !closed && !/"status":"ok"/.test(got)) await new Promise((r) => setTimeout(r, 20))
  s.destroy()
  expect(got.startsWith('HTTP/1.1 ')).toBe(true)
  expect(closed || /"status":"ok"/.test(got)).toBe(true)
})

test('a JSON body refused as too large mid-stream (chunked) does not leave its connection stuck', async () => {
  // lakeFS's staging PUT reads its JSON whole and refuses it past FERRY_MAX_JSON_BYTES (found by
  // the fuzz suite with --follow-up).
  const cfg = join(tempDir('ferry-follow-up-cfg-'), 'c.json')
  writeFileSync(cfg, JSON.stringify({
    lakefs: {
      signingSecret: 'follow-up-signing-secret', jwtSecret: 'follow-up-jwt-secret',
      credentials: [{ accessKeyId: 'AKIAFOLLOW', secretAccessKey: 'follow-up-secret-key' }],
      repositories: [{ name: 'repo1', storageNamespace: 'local://repo1', branches: ['main'] }],
    },
  }))
  const big = await startFerry({ FERRY_MAX_JSON_BYTES: '1024', FERRY_CONFIG: cfg })
  try {
    const port = Number(new URL(big.url).port)
    const s = connect(port, '127.0.0.1')
    let got = ''
    let closed = false
    s.on('data', (d: Buffer) => (got += d.toString('latin1')))
    s.on('close', () => (closed = true))
    s.on('error', () => {})
    const json = Buffer.from(`{"a":"${'p'.repeat(200_000)}"}`)
    const auth = Buffer.from('AKIAFOLLOW:follow-up-secret-key').toString('base64')
    s.write(`PUT /api/v1/repositories/repo1/branches/main/staging/backing?path=x HTTP/1.1\r\nHost: x\r\nAuthorization: Basic ${auth}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n`)
    s.write(`${json.length.toString(16)}\r\n`)
    s.write(json)
    s.write('\r\n0\r\n\r\n')
    s.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n')
    const until = Date.now() + 8000
    while (Date.now() < until && !closed && !/"status":"ok"/.test(got)) await new Promise((r) => setTimeout(r, 20))
    s.destroy()
    expect(got.slice(0, 12)).toBe('HTTP/1.1 413')
    expect(closed || /"status":"ok"/.test(got)).toBe(true)
  } finally {
    await big.close()
    removeDir(big.dataDir)
    removeDir(dirname(cfg))
  }
})
