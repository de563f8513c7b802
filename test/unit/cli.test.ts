/**
 * The pure parts of `ferry upload`: how missing ranges become chunks, what a failed chunk still
 * has to send, option values, where resume state lives and what it is keyed by, and the URLs.
 */
import { describe, expect, test } from '@jest/globals'
import { homedir } from 'node:os'
import { imageStoreUrl, splitRanges, stillMissing } from '../../src/cli/imagestore.js'
import { parseSize } from '../../src/cli/options.js'
import { Meter } from '../../src/cli/progress.js'
import { stateDir, stateKey } from '../../src/cli/state.js'
import { tusEndpoint } from '../../src/cli/tus.js'

const K = 1024

describe('splitRanges', () => {
  test('chunks of the size asked, the last one shorter', () => {
    expect(splitRanges([{ start: 0, end: 999_999 }], 400_000)).toEqual([
      { start: 0, end: 399_999 },
      { start: 400_000, end: 799_999 },
      { start: 800_000, end: 999_999 },
    ])
  })

  test('a tail under 64 KiB joins the chunk before it (the server refuses tiny chunks)', () => {
    expect(splitRanges([{ start: 0, end: 256 * K + 10 - 1 }], 128 * K)).toEqual([
      { start: 0, end: 128 * K - 1 },
      { start: 128 * K, end: 256 * K + 10 - 1 },
    ])
  })

  test('each missing range on its own, in order', () => {
    const got = splitRanges(
      [
        { start: 0, end: 99 },
        { start: 500 * K, end: 700 * K - 1 },
      ],
      128 * K,
    )
    expect(got).toEqual([
      { start: 0, end: 99 },
      { start: 500 * K, end: 628 * K - 1 },
      { start: 628 * K, end: 700 * K - 1 },
    ])
  })
})

describe('stillMissing', () => {
  test('only what the server still expects of a chunk', () => {
    const expected = [
      { start: 0, end: 9 },
      { start: 20, end: 29 },
      { start: 40, end: 49 },
    ]
    expect(stillMissing({ start: 5, end: 24 }, expected)).toEqual([
      { start: 5, end: 9 },
      { start: 20, end: 24 },
    ])
    expect(stillMissing({ start: 10, end: 19 }, expected)).toEqual([])
  })
})

describe('parseSize', () => {
  test('binary units alone, decimal with B, plain bytes', () => {
    expect(parseSize('8M')).toBe(8 * K * K)
    expect(parseSize('512KiB')).toBe(512 * K)
    expect(parseSize('2mb')).toBe(2_000_000)
    expect(parseSize('1.5G')).toBe(1.5 * K * K * K)
    expect(parseSize('1048576')).toBe(1_048_576)
  })

  test('nonsense and zero are refused', () => {
    for (const bad of ['lots', '8 parsecs', '-1', '0', '']) expect(() => parseSize(bad)).toThrow()
  })
})

describe('resume state', () => {
  test('under $XDG_CACHE_HOME, else ~/.cache (a relative XDG value is ignored)', () => {
    expect(stateDir({ XDG_CACHE_HOME: '/var/cache/me' })).toBe('/var/cache/me/ferry/uploads')
    expect(stateDir({})).toBe(`${homedir()}/.cache/ferry/uploads`)
    expect(stateDir({ XDG_CACHE_HOME: 'rel' })).toBe(`${homedir()}/.cache/ferry/uploads`)
  })

  test('keyed by path, size, mtime and target: any change is another upload', () => {
    const f = { path: '/data/a.bin', size: 10, mtimeMs: 1000 }
    const k = stateKey(f, 'tus http://x/files/')
    expect(stateKey({ ...f }, 'tus http://x/files/')).toBe(k)
    expect(stateKey({ ...f, path: '/data/b.bin' }, 'tus http://x/files/')).not.toBe(k)
    expect(stateKey({ ...f, size: 11 }, 'tus http://x/files/')).not.toBe(k)
    expect(stateKey({ ...f, mtimeMs: 2000 }, 'tus http://x/files/')).not.toBe(k)
    expect(stateKey(f, 'tus http://y/files/')).not.toBe(k)
  })
})

describe('URLs', () => {
  test('a bare server URL gets /files/; a full tus endpoint is kept', () => {
    expect(tusEndpoint(new URL('http://h:8080')).href).toBe('http://h:8080/files/')
    expect(tusEndpoint(new URL('http://h/up/tus/')).href).toBe('http://h/up/tus/')
  })

  test('ImageStore paths are percent-encoded per segment, under a base path', () => {
    const u = imageStoreUrl(
      new URL('http://h/ferry/'),
      'a b/c#d.bin',
      'UploadChunk',
      '&session-id=x',
    )
    expect(u.href).toBe(
      'http://h/ferry/ImageStore/a%20b/c%23d.bin/$/UploadChunk?api-version=6.0&session-id=x',
    )
  })
})

describe('progress meter', () => {
  test('a finished upload shows its average rate and ETA 0s, even when it took under 50 ms', () => {
    const mib3 = 3 * 1024 * 1024
    const done = new Meter(0, 1000).stats(mib3, mib3, 1010)
    expect(done.eta).toBe('0s')
    expect(done.rate).not.toBe('0 B/s')
    // Half way after 1 s: 1.5 MiB/s, one more second to go.
    expect(new Meter(0, 1000).stats(mib3 / 2, mib3, 2000)).toEqual({ rate: '1.5 MiB/s', eta: '1s' })
    // Too early to tell while running.
    expect(new Meter(0, 1000).stats(10, mib3, 1010)).toEqual({ rate: '0 B/s', eta: '--' })
  })
})
