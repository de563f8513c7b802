/**
 * Bulk-ingest JWT `exp` rule (issue 9, item 11): required by default; `ingest.jwt.requireExp:
 * false` in FERRY_CONFIG accepts tokens without it (dsp-ingest compatibility). The config file is
 * read by loadConfig and its settings handed to the verifier, as the family does.
 */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { loadConfig } from '../../src/config/config.js'
import { UploadError } from '../../src/core/errors.js'
import { createJwtVerifier } from '../../src/http/ingest/auth.js'
import { signJwt } from '../helpers/jwt.js'
import { removeDir, tempDir } from '../helpers/server.js'

const SECRET = 'ingest-jwt-unit-secret'
const jwt = (exp: number | null) =>
  signJwt({ sub: 'me', scope: 'admin' }, { secret: SECRET, iss: 'iss', aud: 'aud', exp })

describe('ingest.jwt.requireExp', () => {
  let dir: string
  beforeAll(() => {
    dir = tempDir()
  })
  afterAll(() => removeDir(dir))
  const verifierFor = (jwtExtra: Record<string, unknown>) => {
    const file = join(dir, `c-${Math.random()}.json`)
    writeFileSync(
      file,
      JSON.stringify({
        ingest: { jwt: { secret: SECRET, issuer: 'iss', audience: 'aud', ...jwtExtra } },
      }),
    )
    const config = loadConfig({ FERRY_CONFIG: file })
    return createJwtVerifier(config.ingest!.jwt)
  }

  test('default: a token without exp is 401; with a future exp it passes', async () => {
    const verify = verifierFor({})
    const err = await verify(`Bearer ${await jwt(null)}`).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(UploadError)
    expect((err as UploadError).code).toBe('ERR_UNAUTHORIZED')
    await expect(
      verify(`Bearer ${await jwt(Math.floor(Date.now() / 1000) + 600)}`),
    ).resolves.toMatchObject({ subject: 'me', admin: true })
  })

  test('requireExp: false accepts a token without exp, and still refuses an expired one', async () => {
    const verify = verifierFor({ requireExp: false })
    await expect(verify(`Bearer ${await jwt(null)}`)).resolves.toMatchObject({ subject: 'me' })
    await expect(verify(`Bearer ${await jwt(1_700_000_000)}`)).rejects.toBeInstanceOf(UploadError)
  })

  test('requireExp must be a boolean', () => {
    const file = join(dir, 'bad.json')
    writeFileSync(
      file,
      JSON.stringify({
        ingest: { jwt: { secret: SECRET, issuer: 'iss', audience: 'aud', requireExp: 'no' } },
      }),
    )
    expect(() => loadConfig({ FERRY_CONFIG: file })).toThrow(
      /FERRY_CONFIG\.ingest\.jwt\.requireExp/,
    )
  })
})
