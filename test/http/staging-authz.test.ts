/**
 * lakeFS repository allow-lists (issue 17, item 13): `credentials[].repositories` and
 * `lakefs.jwtSubjects` in FERRY_CONFIG. A denial is lakeFS's policy denial, 401
 * {"message":"insufficient permissions"}, decided before the repository is looked up.
 */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals'
import { loadConfig } from '../../src/config/config.js'
import { request, type Reply } from '../helpers/http.js'
import { bearer as jwtBearer } from '../helpers/jwt.js'
import { basicAuth } from '../helpers/staging.js'
import { removeDir, startFerry, tempDir, writeConfig, type TestServer } from '../helpers/server.js'

const JWT_SECRET = 'authz-jwt-secret'
const basic = basicAuth
const ONLY_REPO1 = basic('AKIAREPO1', 'repo1-only-secret')
const ANY_REPO = basic('AKIAANY', 'any-repo-secret')
const repos = [
  { name: 'repo1', storageNamespace: 'local://repo1', branches: ['main'] },
  { name: 'repo2', storageNamespace: 'local://repo2', branches: ['main'] },
]
const lakefs = (extra: Record<string, unknown> = {}) => ({
  signingSecret: 'authz-signing',
  jwtSecret: JWT_SECRET,
  credentials: [
    { accessKeyId: 'AKIAREPO1', secretAccessKey: 'repo1-only-secret', repositories: ['repo1'] },
    { accessKeyId: 'AKIAANY', secretAccessKey: 'any-repo-secret' },
  ],
  repositories: repos,
  ...extra,
})
const bearer = (sub: string) => jwtBearer({ sub }, { secret: JWT_SECRET, exp: '1h' })

let srv: TestServer
let open: TestServer
let dir: string

const configFile = (name: string, body: object): string => writeConfig(dir, name, body)

beforeAll(async () => {
  dir = tempDir('ferry-authz-')
  srv = await startFerry({
    FERRY_CONFIG: configFile('a.json', {
      lakefs: lakefs({ jwtSubjects: { alice: ['repo2'], carol: ['repo1', 'repo2'] } }),
    }),
  })
  open = await startFerry({ FERRY_CONFIG: configFile('b.json', { lakefs: lakefs() }) })
})
afterAll(async () => {
  await srv.close()
  await open.close()
  removeDir(srv.dataDir)
  removeDir(open.dataDir)
  removeDir(dir)
})

const getAddress = (s: TestServer, repo: string, authorization: string) =>
  request(`${s.url}/api/v1/repositories/${repo}/branches/main/staging/backing?path=a%2Fb.bin`, {
    headers: { Authorization: authorization },
  })
const link = (s: TestServer, repo: string, authorization: string, body = '{}') =>
  request(`${s.url}/api/v1/repositories/${repo}/branches/main/staging/backing?path=a%2Fb.bin`, {
    method: 'PUT',
    body,
    headers: { Authorization: authorization, 'Content-Type': 'application/json' },
  })
const denied = (r: Reply) => {
  expect(r.status).toBe(401)
  expect(r.text()).toBe('{"message":"insufficient permissions"}\n')
}

describe('per-credential allow-lists', () => {
  test('a key limited to repo1 gets addresses in repo1 and 401 insufficient permissions elsewhere, unknown repositories included', async () => {
    expect((await getAddress(srv, 'repo1', ONLY_REPO1)).status).toBe(200)
    denied(await getAddress(srv, 'repo2', ONLY_REPO1))
    // Not 404: a restricted key learns nothing about repositories outside its list.
    denied(await getAddress(srv, 'repo9', ONLY_REPO1))
  })

  test('a link into a repository outside the list is refused before its body is read', async () => {
    denied(await link(srv, 'repo2', ONLY_REPO1, 'not json at all'))
    // In its own repository the same body gets as far as validation.
    expect((await link(srv, 'repo1', ONLY_REPO1, 'not json at all')).status).toBe(400)
  })

  test('a key without a list reaches every repository; an unknown one is still 404', async () => {
    expect((await getAddress(srv, 'repo1', ANY_REPO)).status).toBe(200)
    expect((await getAddress(srv, 'repo2', ANY_REPO)).status).toBe(200)
    expect((await getAddress(srv, 'repo9', ANY_REPO)).status).toBe(404)
  })

  test('/config needs only authentication', async () => {
    expect(
      (await request(`${srv.url}/api/v1/config`, { headers: { Authorization: ONLY_REPO1 } }))
        .status,
    ).toBe(200)
  })
})

describe('per-subject allow-lists for JWTs', () => {
  test('a listed subject reaches its repositories only', async () => {
    const alice = await bearer('alice')
    expect((await getAddress(srv, 'repo2', alice)).status).toBe(200)
    denied(await getAddress(srv, 'repo1', alice))
    const carol = await bearer('carol')
    expect((await getAddress(srv, 'repo1', carol)).status).toBe(200)
    expect((await getAddress(srv, 'repo2', carol)).status).toBe(200)
  })

  test('once jwtSubjects is set, a subject it does not list reaches nothing (prototype names included)', async () => {
    for (const sub of ['bob', 'constructor', '__proto__', 'toString']) {
      const t = await bearer(sub)
      denied(await getAddress(srv, 'repo1', t))
      denied(await getAddress(srv, 'repo2', t))
    }
  })

  test('without jwtSubjects every valid JWT reaches every repository (unchanged behaviour)', async () => {
    const bob = await bearer('bob')
    expect((await getAddress(open, 'repo1', bob)).status).toBe(200)
    expect((await getAddress(open, 'repo2', bob)).status).toBe(200)
  })
})

describe('allow-list configuration', () => {
  const load = (body: object) =>
    loadConfig({ FERRY_CONFIG: configFile(`c-${Math.random()}.json`, body) })
  test('names that are not configured repositories, and wrong shapes, stop the start naming the key', () => {
    expect(() => load({ lakefs: lakefs({ jwtSubjects: { alice: ['repo3'] } }) })).toThrow(
      /jwtSubjects\.alice: "repo3" is not a configured repository/,
    )
    expect(() => load({ lakefs: lakefs({ jwtSubjects: ['alice'] }) })).toThrow(
      /jwtSubjects must be an object/,
    )
    expect(() => load({ lakefs: lakefs({ jwtSubjects: { alice: 'repo1' } }) })).toThrow(
      /jwtSubjects\.alice must be an array/,
    )
    const badCred = lakefs()
    badCred.credentials = [{ accessKeyId: 'A', secretAccessKey: 'B', repositories: ['nope'] }]
    expect(() => load({ lakefs: badCred })).toThrow(/credentials\[0\]\.repositories: "nope"/)
  })
  test('an empty list is allowed and means no repository', () => {
    const c = load({ lakefs: lakefs({ jwtSubjects: { nobody: [] } }) })
    expect(c.lakefs!.jwtSubjects).toEqual({ nobody: [] })
    expect(c.lakefs!.credentials[0]!.repositories).toEqual(['repo1'])
    expect(c.lakefs!.credentials[1]!.repositories).toBeNull()
  })
})
