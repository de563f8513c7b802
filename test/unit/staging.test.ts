import { describe, expect, test } from '@jest/globals'
import { createHmac } from 'node:crypto'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { loadConfig } from '../../src/config/config.js'
import {
  checkPresigned,
  idTimeSec,
  LINK_ADDRESS_TTL_SEC,
  makeSignedAddress,
  presignQuery,
  SIGNED_ADDRESS_RE,
  verifySignedAddress,
} from '../../src/core/staging/signing.js'
import { checksumMatches } from '../../src/core/staging/store.js'
import { LAKEFS_STATUS } from '../../src/http/staging/errors.js'
import { parseStagingMetadata } from '../../src/http/staging/family.js'
import { removeDir, tempDir } from '../helpers/server.js'

const SECRET = 'unit-secret'
const claims = { repository: 'repo1', branch: 'main', path: 'a/b.txt' }
const T0 = Date.UTC(2025, 0, 15, 12, 30, 0)

// Completeness of the table: test/unit/error-tables.test.ts.
describe('lakeFS error table', () => {
  test('follows lakeFS where it has the condition', () => {
    expect(LAKEFS_STATUS).toMatchObject({
      ERR_UNAUTHORIZED: 401,
      ERR_NOT_FOUND: 404,
      ERR_PRECONDITION_FAILED: 412,
      ERR_ALREADY_EXISTS: 412,
      ERR_NOT_IMPLEMENTED: 501,
      ERR_CLIENT_ABORTED: 499,
      ERR_DEPENDENCY_MISSING: 409,
    })
  })
})

describe('signed physical addresses', () => {
  test('have the shape data/<partition>/<id>,<sig> and carry their creation time', () => {
    const a = makeSignedAddress(SECRET, claims, T0)
    expect(a).toMatch(SIGNED_ADDRESS_RE)
    const id = a.split('/')[2]!.split(',')[0]!
    expect(idTimeSec(id)).toBe(Math.floor(T0 / 1000))
    expect(makeSignedAddress(SECRET, claims, T0)).not.toBe(a)
    // Partitions sort newest first: a later hour has a smaller partition name.
    const later = makeSignedAddress(SECRET, claims, T0 + 3600_000)
    expect(later.split('/')[1]! < a.split('/')[1]!).toBe(true)
  })

  test('the signature is HMAC-SHA256 over the Go JSON of Repository, Branch, Path, PhysicalAddress', () => {
    const c = { repository: 'repo1', branch: 'main', path: 'x<y>&z.txt' }
    const a = makeSignedAddress(SECRET, c, T0)
    const [unsigned, sig] = a.split(',') as [string, string]
    const doc = `{"Repository":"repo1","Branch":"main","Path":"x\\u003cy\\u003e\\u0026z.txt","PhysicalAddress":"${unsigned}"}`
    expect(sig).toBe(createHmac('sha256', SECRET).update(doc).digest('base64url'))
  })

  test('verify accepts the address until 24 hours after it was made', () => {
    const a = makeSignedAddress(SECRET, claims, T0)
    expect(() => verifySignedAddress(SECRET, claims, a, T0)).not.toThrow()
    expect(() =>
      verifySignedAddress(SECRET, claims, a, T0 + LINK_ADDRESS_TTL_SEC * 1000),
    ).not.toThrow()
    expect(() =>
      verifySignedAddress(SECRET, claims, a, T0 + (LINK_ADDRESS_TTL_SEC + 1) * 1000),
    ).toThrow('link address expired')
  })

  test.each([
    [
      'unsigned',
      (a: string) => a.slice(0, a.indexOf(',')),
      'address is not signed: link address invalid',
    ],
    [
      'malformed signature',
      (a: string) => `${a.slice(0, a.indexOf(','))},not*base64`,
      'malformed address signature: link address invalid',
    ],
    [
      'short signature',
      (a: string) => a.slice(0, -2),
      'malformed address signature: link address invalid',
    ],
    [
      'tampered signature',
      (a: string) => a.replace(/,(.)/, (_m, c: string) => `,${c === 'A' ? 'B' : 'A'}`),
      'invalid address signature: link address invalid',
    ],
    [
      'non-canonical signature',
      (a: string) =>
        a.slice(0, -1) +
        'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'[
          'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'.indexOf(a.at(-1)!) ^ 1
        ],
      'malformed address signature: link address invalid',
    ],
    [
      'tampered id',
      (a: string) =>
        a.replace(/\/(.)([^/]*),/, (_m, c: string, r: string) => `/${c === '0' ? '1' : '0'}${r},`),
      'invalid address signature: link address invalid',
    ],
  ])('refuses a %s address', (_n, change, message) => {
    const a = makeSignedAddress(SECRET, claims, T0)
    expect(() => verifySignedAddress(SECRET, claims, change(a), T0)).toThrow(message)
  })

  test('an address signed for another path, branch, repository or key is refused', () => {
    const a = makeSignedAddress(SECRET, claims, T0)
    for (const other of [
      { ...claims, path: 'a/c.txt' },
      { ...claims, branch: 'dev' },
      { ...claims, repository: 'repo2' },
    ]) {
      expect(() => verifySignedAddress(SECRET, other, a, T0)).toThrow(
        'invalid address signature: link address invalid',
      )
    }
    expect(() => verifySignedAddress('other-secret', claims, a, T0)).toThrow(
      'invalid address signature',
    )
  })
})

describe('presigned URLs', () => {
  const rel = makeSignedAddress(SECRET, claims, T0)
  const exp = Math.floor(T0 / 1000) + 900
  const q = new URLSearchParams(presignQuery(SECRET, 'repo1', rel, exp))
  const sig = q.get('X-Ferry-Signature')
  test('a fresh signature is accepted through its expiry second, refused after', () => {
    expect(q.get('X-Ferry-Expires')).toBe(String(exp))
    expect(checkPresigned(SECRET, 'repo1', rel, String(exp), sig, T0)).toBeNull()
    expect(checkPresigned(SECRET, 'repo1', rel, String(exp), sig, exp * 1000 + 999)).toBeNull()
    expect(checkPresigned(SECRET, 'repo1', rel, String(exp), sig, (exp + 1) * 1000)).toBe('expired')
  })
  test('a changed expiry, address, repository or signature, or a missing parameter, is refused', () => {
    expect(checkPresigned(SECRET, 'repo1', rel, String(exp + 3600), sig, T0)).toBe('mismatch')
    expect(
      checkPresigned(SECRET, 'repo1', makeSignedAddress(SECRET, claims, T0), String(exp), sig, T0),
    ).toBe('mismatch')
    expect(checkPresigned(SECRET, 'repo2', rel, String(exp), sig, T0)).toBe('mismatch')
    expect(
      checkPresigned(
        SECRET,
        'repo1',
        rel,
        String(exp),
        `${sig!.startsWith('A') ? 'B' : 'A'}${sig!.slice(1)}`,
        T0,
      ),
    ).toBe('mismatch')
    expect(checkPresigned(SECRET, 'repo1', rel, 'soon', sig, T0)).toBe('mismatch')
    expect(checkPresigned(SECRET, 'repo1', rel, null, sig, T0)).toBe('missing')
    expect(checkPresigned(SECRET, 'repo1', rel, String(exp), null, T0)).toBe('missing')
  })
})

describe('checksums a link accepts', () => {
  const d = {
    md5: '5d41402abc4b2a76b9719d911017c592',
    sha256: '2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824',
  }
  test('md5 hex (any case), md5 base64 (Content-MD5), sha256 hex', () => {
    expect(checksumMatches(d.md5, d)).toBe(true)
    expect(checksumMatches(d.md5.toUpperCase(), d)).toBe(true)
    expect(checksumMatches('XUFAKrxLKna5cZ2REBfFkg==', d)).toBe(true)
    expect(checksumMatches(d.sha256, d)).toBe(true)
    expect(checksumMatches(d.md5.replace('5', '6'), d)).toBe(false)
    expect(checksumMatches('xufakrxlkna5cz2rebffkg==', d)).toBe(false)
  })
})

describe('StagingMetadata', () => {
  const ok = {
    staging: { physical_address: 'local://repo1/data/x', presigned_url: null },
    checksum: 'abc',
    size_bytes: 3,
  }
  test('takes the required fields and the optional ones, ignores echoed presign fields', () => {
    expect(
      parseStagingMetadata({
        ...ok,
        staging: { ...ok.staging, presigned_url: 'http://x', presigned_url_expiry: 5 },
        user_metadata: { k: 'v' },
        content_type: 'text/plain',
        mtime: 7,
        force: false,
      }),
    ).toEqual({
      physicalAddress: 'local://repo1/data/x',
      checksum: 'abc',
      sizeBytes: 3,
      userMetadata: { k: 'v' },
      contentType: 'text/plain',
      mtimeSec: 7,
    })
    expect(parseStagingMetadata(ok)).toMatchObject({
      userMetadata: {},
      contentType: null,
      mtimeSec: null,
    })
  })
  test.each([
    [[], 'value must be an object'],
    [{ staging: ok.staging, checksum: 'a' }, 'property "size_bytes" is missing'],
    [{ checksum: 'a', size_bytes: 1 }, 'property "staging" is missing'],
    [{ ...ok, staging: {} }, 'physical_address is required'],
    [{ ...ok, checksum: 5 }, 'property "checksum": value must be a string'],
    [{ ...ok, size_bytes: '3' }, 'property "size_bytes": value must be an integer'],
    [{ ...ok, size_bytes: 1.5 }, 'property "size_bytes": value must be an integer'],
    [{ ...ok, size_bytes: -1 }, 'size_bytes must not be negative'],
    [{ ...ok, user_metadata: { a: 1 } }, 'property "user_metadata.a": value must be a string'],
    [{ ...ok, mtime: 'now' }, 'property "mtime": value must be an integer'],
    [{ ...ok, force: 'yes' }, 'property "force": value must be a boolean'],
  ])('refuses %j', (body, message) => {
    expect(() => parseStagingMetadata(body)).toThrow(message)
  })
})

describe('lakefs configuration', () => {
  const base = { signingSecret: 's', jwtSecret: 'j', credentials: [] }
  const load = (repositories: unknown) => {
    const dir = tempDir('ferry-lakefs-unit-')
    try {
      const f = join(dir, 'c.json')
      writeFileSync(f, JSON.stringify({ lakefs: { ...base, repositories } }))
      return loadConfig({ FERRY_CONFIG: f })
    } finally {
      removeDir(dir)
    }
  }
  test('repository ids, branch ids and namespaces follow lakeFS rules; duplicates are refused', () => {
    expect(
      load([
        { name: 'repo-1', storageNamespace: 'local://repo-1', branches: ['main', 'feature_x-2'] },
      ]).lakefs?.repositories[0]?.name,
    ).toBe('repo-1')
    expect(() =>
      load([{ name: 'Repo', storageNamespace: 'local://r', branches: ['main'] }]),
    ).toThrow(/repositories\[0\]\.name/)
    expect(() =>
      load([{ name: '../x', storageNamespace: 'local://r', branches: ['main'] }]),
    ).toThrow(/repositories\[0\]\.name/)
    expect(() =>
      load([{ name: 'repo1', storageNamespace: 'local://r', branches: ['a/b'] }]),
    ).toThrow(/branches\[0\]/)
    expect(() =>
      load([{ name: 'repo1', storageNamespace: 'no-scheme', branches: ['main'] }]),
    ).toThrow(/storageNamespace/)
    const r = { name: 'repo1', storageNamespace: 'local://r', branches: ['main'] }
    expect(() => load([r, r])).toThrow(/listed twice/)
  })
})
