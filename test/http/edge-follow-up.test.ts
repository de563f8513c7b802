/**
 * A request answered before its body was read to its end must not leave its keep-alive
 * connection stuck: the next request on it is answered, or the connection is closed — never a
 * hang until the idle timeout. Found by the fuzz suite with --follow-up.
 */
import { afterAll, beforeAll, expect, test } from '@jest/globals'
import { writeFileSync } from 'node:fs'
import { connect } from 'node:net'
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

/**
 * Sends `first` (head and body, as given), then `GET /healthz` on the same connection; answers
 * what came back once healthz is answered or the connection closed (at most `waitMs`).
 */
async function thenHealthz(
  url: string,
  first: (string | Buffer)[],
  waitMs = 8000,
): Promise<{ got: string; followedUp: boolean; closed: boolean }> {
  const s = connect(Number(new URL(url).port), '127.0.0.1')
  let got = ''
  let closed = false
  s.on('data', (d: Buffer) => (got += d.toString('latin1')))
  s.on('close', () => (closed = true))
  s.on('error', () => {})
  for (const part of first) s.write(part)
  s.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n')
  const answered = () => /"status":"ok"/.test(got)
  const until = Date.now() + waitMs
  while (Date.now() < until && !closed && !answered()) await new Promise((r) => setTimeout(r, 20))
  s.destroy()
  return { got, followedUp: answered(), closed }
}

test('the next request on a connection whose multipart body was refused early is answered', async () => {
  const body = Buffer.concat([
    Buffer.from('--XB\r\nContent-Disposition: form-data; name="file"; filename="a"\r\nX: y'),
    Buffer.alloc(1024 * 1024, 0x61),
    Buffer.from('\r\n--XB--\r\n'),
  ])
  const r = await thenHealthz(srv.url, [
    `PUT /ImageStore/a.bin?api-version=6.0 HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=XB\r\nContent-Length: ${body.length}\r\n\r\n`,
    body,
  ])
  expect(r.got.slice(0, 12)).toBe('HTTP/1.1 400')
  expect(r.followedUp || r.closed).toBe(true)
})

test('a request carrying Connection: upgrade is answered and its connection closed, never left hanging', async () => {
  const body = Buffer.alloc(4096, 0x61)
  const r = await thenHealthz(
    srv.url,
    [
      `GET /ImageStore/a.bin?api-version=6.0 HTTP/1.1\r\nHost: x\r\nContent-Length: ${body.length}\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n`,
      body,
    ],
    5000,
  )
  expect(r.got.startsWith('HTTP/1.1 ')).toBe(true)
  expect(r.followedUp || r.closed).toBe(true)
})

test('a JSON body refused as too large mid-stream (chunked) does not leave its connection stuck', async () => {
  // lakeFS's staging PUT reads its JSON whole and refuses it past FERRY_MAX_JSON_BYTES.
  const cfg = join(tempDir('ferry-follow-up-cfg-'), 'c.json')
  writeFileSync(
    cfg,
    JSON.stringify({
      lakefs: {
        signingSecret: 'follow-up-signing-secret',
        jwtSecret: 'follow-up-jwt-secret',
        credentials: [{ accessKeyId: 'AKIAFOLLOW', secretAccessKey: 'follow-up-secret-key' }],
        repositories: [{ name: 'repo1', storageNamespace: 'local://repo1', branches: ['main'] }],
      },
    }),
  )
  const big = await startFerry({ FERRY_MAX_JSON_BYTES: '1024', FERRY_CONFIG: cfg })
  try {
    const json = Buffer.from(`{"a":"${'p'.repeat(200_000)}"}`)
    const auth = Buffer.from('AKIAFOLLOW:follow-up-secret-key').toString('base64')
    const r = await thenHealthz(big.url, [
      `PUT /api/v1/repositories/repo1/branches/main/staging/backing?path=x HTTP/1.1\r\nHost: x\r\nAuthorization: Basic ${auth}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n`,
      `${json.length.toString(16)}\r\n`,
      json,
      '\r\n0\r\n\r\n',
    ])
    expect(r.got.slice(0, 12)).toBe('HTTP/1.1 413')
    expect(r.followedUp || r.closed).toBe(true)
  } finally {
    await big.close()
    removeDir(big.dataDir)
    removeDir(dirname(cfg))
  }
})
