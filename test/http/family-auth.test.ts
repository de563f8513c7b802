/**
 * Families on and off, and bearer auth for ImageStore and Shaman (issue 17, item 10): static
 * tokens and HS256 JWTs from FERRY_CONFIG, refusals in each API's own error body with a Bearer
 * challenge, and the start-up warning for an open family on a non-loopback address.
 */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals'
import { Writable } from 'node:stream'
import { pino } from 'pino'
import { createApp, isLoopback } from '../../src/app.js'
import { loadConfig } from '../../src/config/config.js'
import { request, type Reply } from '../helpers/http.js'
import { signJwt } from '../helpers/jwt.js'
import { removeDir, startFerry, tempDir, writeConfig, type TestServer } from '../helpers/server.js'

const IMAGESTORE_TOKEN = 'imagestore-static-token-0123456789'
const SHAMAN_SECRET = 'shaman-jwt-secret-for-tests'
const SHAMAN_TOKEN = 'shaman-static-token-abcdefghijkl'

let dir: string
const configFile = (name: string, body: object) => writeConfig(dir, name, body)
const shamanJwt = (
  claims: Record<string, unknown> = {},
  exp: string | null = '1h',
  secret = SHAMAN_SECRET,
) => {
  return signJwt({ sub: 'artist', ...claims }, { secret, iss: 'flamenco', exp })
}

beforeAll(() => {
  dir = tempDir('ferry-auth-')
})
afterAll(() => removeDir(dir))

describe('bearer auth on ImageStore and Shaman', () => {
  let srv: TestServer
  beforeAll(async () => {
    srv = await startFerry({
      FERRY_CONFIG: configFile('auth.json', {
        imagestore: { auth: { tokens: [IMAGESTORE_TOKEN] } },
        shaman: {
          auth: { tokens: [SHAMAN_TOKEN], jwt: { secret: SHAMAN_SECRET, issuer: 'flamenco' } },
        },
      }),
    })
  })
  afterAll(async () => {
    await srv.close()
    removeDir(srv.dataDir)
  })

  const imagestore = (authorization?: string) =>
    request(`${srv.url}/ImageStore?api-version=6.0`, {
      headers: authorization === undefined ? {} : { Authorization: authorization },
    })
  const shaman = (authorization?: string) =>
    request(`${srv.url}/api/v3/shaman/files/${'a'.repeat(64)}/1`, {
      headers: authorization === undefined ? {} : { Authorization: authorization },
    })
  const fabricDenied = (r: Reply, challenge: string) => {
    expect(r.status).toBe(401)
    expect(r.headers['www-authenticate']).toBe(challenge)
    expect(r.json<{ Error: { Code: string; Message: string } }>().Error.Code).toBe('E_ACCESSDENIED')
  }
  const shamanDenied = (r: Reply, challenge: string) => {
    expect(r.status).toBe(401)
    expect(r.headers['www-authenticate']).toBe(challenge)
    expect(r.json<{ code: number; message: string }>()).toEqual({
      code: 401,
      message: expect.any(String),
    })
  }

  test('ImageStore: no or malformed Authorization is 401 FabricError E_ACCESSDENIED with a Bearer challenge', async () => {
    for (const h of [undefined, '', 'Basic dXNlcjpwYXNz', 'Bearer', IMAGESTORE_TOKEN])
      fabricDenied(await imagestore(h), 'Bearer realm="ferry"')
  })

  test('ImageStore: a wrong token is 401 invalid_token and is never echoed; the right one lists (204 empty store)', async () => {
    const wrong = `${IMAGESTORE_TOKEN.slice(0, -1)}X`
    const r = await imagestore(`Bearer ${wrong}`)
    fabricDenied(r, 'Bearer realm="ferry", error="invalid_token"')
    expect(r.text()).not.toContain(wrong)
    // Shaman's token does not open ImageStore.
    fabricDenied(
      await imagestore(`Bearer ${SHAMAN_TOKEN}`),
      'Bearer realm="ferry", error="invalid_token"',
    )
    expect((await imagestore(`Bearer ${IMAGESTORE_TOKEN}`)).status).toBe(204)
    expect((await imagestore(`bearer   ${IMAGESTORE_TOKEN}`)).status).toBe(204)
  })

  test('ImageStore: every route is behind the check, uploads included (nothing written without a token)', async () => {
    const put = await request(`${srv.url}/ImageStore/app/file.bin?api-version=6.0`, {
      method: 'PUT',
      body: 'data',
    })
    fabricDenied(put, 'Bearer realm="ferry"')
    const ok = await request(`${srv.url}/ImageStore/app/file.bin?api-version=6.0`, {
      method: 'PUT',
      body: 'data',
      headers: { Authorization: `Bearer ${IMAGESTORE_TOKEN}` },
    })
    expect(ok.status).toBe(200)
    // Even the route table is hidden: an unknown route is 401 before it is 400.
    fabricDenied(
      await request(`${srv.url}/ImageStore/$/Nope?api-version=6.0`),
      'Bearer realm="ferry"',
    )
  })

  test("Shaman: 401 in the spec's Error body; a static token or a valid JWT is let in", async () => {
    shamanDenied(await shaman(), 'Bearer realm="ferry"')
    shamanDenied(
      await shaman(`Bearer ${IMAGESTORE_TOKEN}`),
      'Bearer realm="ferry", error="invalid_token"',
    )
    expect((await shaman(`Bearer ${SHAMAN_TOKEN}`)).json()).toEqual({ status: 'unknown' })
    expect((await shaman(`Bearer ${await shamanJwt()}`)).status).toBe(200)
    // Unknown routes too are hidden behind the check.
    shamanDenied(await request(`${srv.url}/api/v3/shaman/nope`), 'Bearer realm="ferry"')
  })

  test('Shaman JWTs: expired, without exp, wrong issuer, wrong secret or another algorithm are 401', async () => {
    const expired = await signJwt(
      { sub: 'a' },
      { secret: SHAMAN_SECRET, iss: 'flamenco', exp: 1_700_000_000 },
    )
    shamanDenied(await shaman(`Bearer ${expired}`), 'Bearer realm="ferry", error="invalid_token"')
    shamanDenied(
      await shaman(`Bearer ${await shamanJwt({}, null)}`),
      'Bearer realm="ferry", error="invalid_token"',
    )
    const elsewhere = await signJwt(
      { sub: 'a' },
      { secret: SHAMAN_SECRET, iss: 'elsewhere', exp: '1h' },
    )
    shamanDenied(await shaman(`Bearer ${elsewhere}`), 'Bearer realm="ferry", error="invalid_token"')
    shamanDenied(
      await shaman(`Bearer ${await shamanJwt({}, '1h', 'another-secret-entirely')}`),
      'Bearer realm="ferry", error="invalid_token"',
    )
    const hs512 = await signJwt(
      { sub: 'a' },
      { secret: SHAMAN_SECRET, alg: 'HS512', iss: 'flamenco', exp: '1h' },
    )
    shamanDenied(await shaman(`Bearer ${hs512}`), 'Bearer realm="ferry", error="invalid_token"')
  })
})

describe('families on and off', () => {
  test('FERRY_FAMILIES mounts only the families it names; the others answer 404', async () => {
    const srv = await startFerry({ FERRY_FAMILIES: 'shaman' })
    try {
      expect((await request(`${srv.url}/ImageStore?api-version=6.0`)).status).toBe(404)
      expect((await request(`${srv.url}/api/v3/shaman/files/${'a'.repeat(64)}/1`)).status).toBe(200)
      expect((await request(`${srv.url}/healthz`)).status).toBe(200)
    } finally {
      await srv.close()
      removeDir(srv.dataDir)
    }
  })

  test('FERRY_CONFIG <family>.enabled: false turns a family off', async () => {
    const srv = await startFerry({
      FERRY_CONFIG: configFile('off.json', { shaman: { enabled: false } }),
    })
    try {
      expect((await request(`${srv.url}/api/v3/shaman/files/${'a'.repeat(64)}/1`)).status).toBe(404)
      expect((await request(`${srv.url}/ImageStore?api-version=6.0`)).status).toBe(204)
    } finally {
      await srv.close()
      removeDir(srv.dataDir)
    }
  })

  test.each([
    [{ FERRY_FAMILIES: 'imagestore,bogus' }, /FERRY_FAMILIES: unknown family "bogus"/],
    [
      { FERRY_FAMILIES: 'lakefs' },
      /FERRY_FAMILIES names lakefs, but FERRY_CONFIG has no lakefs section/,
    ],
  ])('bad family settings stop the start: %j', (env, re) => {
    expect(() => loadConfig(env)).toThrow(re)
  })

  test.each([
    [{ imagestore: { enabled: 'yes' } }, /FERRY_CONFIG\.imagestore\.enabled must be true or false/],
    [
      { imagestore: { auth: { tokens: ['short'] } } },
      /FERRY_CONFIG\.imagestore\.auth\.tokens\[0\] must be at least 16 characters/,
    ],
    [{ shaman: { auth: {} } }, /FERRY_CONFIG\.shaman\.auth needs tokens or jwt/],
    [
      { shaman: { auth: { jwt: { secret: 's', algorithm: 'none' } } } },
      /FERRY_CONFIG\.shaman\.auth\.jwt\.algorithm is not a known key/,
    ],
    [{ shaman: { open: true } }, /FERRY_CONFIG\.shaman\.open is not a known key/],
  ])('strict validation of the family sections: %j', (body, re) => {
    expect(() => loadConfig({ FERRY_CONFIG: configFile(`v-${Math.random()}.json`, body) })).toThrow(
      re,
    )
  })

  test('FERRY_FAMILIES contradicting enabled: false is an error', () => {
    expect(() =>
      loadConfig({
        FERRY_FAMILIES: 'shaman',
        FERRY_CONFIG: configFile('c.json', { shaman: { enabled: false } }),
      }),
    ).toThrow(/enabled is false/)
  })
})

describe('start-up warning for open families on a non-loopback address', () => {
  async function startLogs(env: Record<string, string>): Promise<string[]> {
    const lines: string[] = []
    const sink = new Writable({
      write(chunk: Buffer, _enc, cb) {
        lines.push(chunk.toString())
        cb()
      },
    })
    const dataDir = tempDir()
    const config = loadConfig({ FERRY_PORT: '0', FERRY_DATA_DIR: dataDir, ...env })
    const app = await createApp(config, pino({ level: 'info' }, sink))
    try {
      await app.listen()
    } finally {
      await app.close()
      removeDir(dataDir)
    }
    return lines
      .map((l) => JSON.parse(l) as { level: number; msg: string; families?: string[] })
      .filter((l) => l.level === 40)
      .map((l) => `${l.msg} ${JSON.stringify(l.families)}`)
  }

  test('0.0.0.0 with ImageStore, Shaman and tus open: one warning naming all three', async () => {
    const warnings = await startLogs({ FERRY_HOST: '0.0.0.0' })
    expect(warnings).toHaveLength(1)
    expect(warnings[0]).toMatch(/imagestore and shaman and tus/)
    expect(warnings[0]).toContain('["imagestore","shaman","tus"]')
  })

  test('0.0.0.0 with both behind auth (or turned off): no warning; loopback: no warning', async () => {
    const authed = configFile('both.json', {
      imagestore: { auth: { tokens: [IMAGESTORE_TOKEN] } },
      shaman: { auth: { tokens: [SHAMAN_TOKEN] } },
    })
    // tus has no credentials of its own: a pre-create hook authorises its creations.
    const hook = { FERRY_HOOK_URL: 'http://127.0.0.1:9/hooks' }
    expect(await startLogs({ FERRY_HOST: '0.0.0.0', FERRY_CONFIG: authed, ...hook })).toEqual([])
    expect(
      await startLogs({
        FERRY_HOST: '0.0.0.0',
        FERRY_CONFIG: authed,
        FERRY_FAMILIES: 'imagestore,shaman',
      }),
    ).toEqual([])
    const imagestoreOnlyAuthed = configFile('one.json', {
      imagestore: { auth: { tokens: [IMAGESTORE_TOKEN] } },
    })
    expect(
      await startLogs({
        FERRY_HOST: '0.0.0.0',
        FERRY_CONFIG: imagestoreOnlyAuthed,
        FERRY_FAMILIES: 'imagestore',
      }),
    ).toEqual([])
    expect(await startLogs({ FERRY_HOST: '127.0.0.1' })).toEqual([])
  })

  test('what counts as loopback', () => {
    for (const h of ['127.0.0.1', '127.1.2.3', 'localhost', '::1', '[::1]'])
      expect(isLoopback(h)).toBe(true)
    for (const h of ['0.0.0.0', '::', '10.0.0.1', '192.168.1.5', 'example.org'])
      expect(isLoopback(h)).toBe(false)
  })
})
