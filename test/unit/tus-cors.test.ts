import { describe, expect, test } from '@jest/globals'
import {
  CORS_ALLOW_HEADERS,
  CORS_ALLOW_METHODS,
  CORS_EXPOSE_HEADERS,
  CORS_MAX_AGE_SEC,
  CorsConfigError,
  createCorsPolicy,
  parseCorsOrigins,
} from '../../src/http/cors.js'

const list = (v: string | undefined) => (v ?? '').split(',').map((s) => s.trim().toLowerCase())

describe('FERRY_CORS_ORIGINS', () => {
  test.each([undefined, '', '  ', '*'])('%j → any origin', (raw) => {
    expect(parseCorsOrigins(raw)).toEqual({ mode: 'any' })
  })
  test('none → CORS off', () => {
    expect(parseCorsOrigins('none')).toEqual({ mode: 'none' })
    expect(parseCorsOrigins(' NONE ')).toEqual({ mode: 'none' })
  })
  test('a list is normalised the way browsers serialise Origin, duplicates dropped', () => {
    const raw = 'https://App.Example.com, http://localhost:5173/,https://app.example.com:443'
    expect(parseCorsOrigins(raw)).toEqual({
      mode: 'list',
      origins: ['https://app.example.com', 'http://localhost:5173'],
    })
  })
  test.each([
    'app.example.com',
    'https://app.example.com/path',
    'https://app.example.com?x=1',
    'ftp://app.example.com',
    'https://user@app.example.com',
    'https://a.example, *',
    ',',
  ])('%j is refused with a message naming the variable', (raw) => {
    expect(() => parseCorsOrigins(raw)).toThrow(CorsConfigError)
    expect(() => parseCorsOrigins(raw)).toThrow(/FERRY_CORS_ORIGINS/)
  })
})

describe('header lists', () => {
  test('preflight allows PATCH and every tus and IETF request header', () => {
    const methods = ['POST', 'HEAD', 'PATCH', 'DELETE', 'OPTIONS', 'GET']
    expect(CORS_ALLOW_METHODS).toEqual(expect.arrayContaining(methods))
    for (const h of [
      'Tus-Resumable',
      'Upload-Length',
      'Upload-Offset',
      'Upload-Metadata',
      'Upload-Defer-Length',
      'Upload-Concat',
      'Upload-Checksum',
      'X-HTTP-Method-Override',
      'Content-Type',
      'Authorization',
      'Upload-Complete',
      'Upload-Draft-Interop-Version',
    ]) {
      expect(CORS_ALLOW_HEADERS).toContain(h)
    }
  })
  test('answers expose Location, the Upload-* and Tus-* headers and the draft headers', () => {
    for (const h of [
      'Location',
      'Upload-Offset',
      'Upload-Length',
      'Upload-Expires',
      'Upload-Metadata',
      'Upload-Concat',
      'Upload-Defer-Length',
      'Tus-Version',
      'Tus-Resumable',
      'Tus-Max-Size',
      'Tus-Extension',
      'Tus-Checksum-Algorithm',
      'Upload-Draft-Interop-Version',
      'Upload-Complete',
      'Upload-Limit',
      'ETag',
    ]) {
      expect(CORS_EXPOSE_HEADERS).toContain(h)
    }
  })
  test('no duplicates in any list', () => {
    for (const l of [CORS_ALLOW_METHODS, CORS_ALLOW_HEADERS, CORS_EXPOSE_HEADERS]) {
      expect(new Set(l.map((x) => x.toLowerCase())).size).toBe(l.length)
    }
  })
})

describe('policy: any origin (the default)', () => {
  const p = createCorsPolicy(parseCorsOrigins(undefined))
  test('preflight answers * with methods, headers and max-age, no credentials, no Vary', () => {
    const h = p.preflightHeaders('https://uppy.example')
    expect(h['Access-Control-Allow-Origin']).toBe('*')
    expect(list(h['Access-Control-Allow-Methods'])).toContain('patch')
    expect(list(h['Access-Control-Allow-Headers'])).toEqual(
      expect.arrayContaining([
        'upload-offset',
        'tus-resumable',
        'upload-checksum',
        'upload-complete',
      ]),
    )
    expect(h['Access-Control-Max-Age']).toBe(String(CORS_MAX_AGE_SEC))
    expect(h['Access-Control-Allow-Credentials']).toBeUndefined()
    expect(h['Vary']).toBeUndefined()
  })
  test('actual answers expose the tus headers', () => {
    const h = p.responseHeaders('https://uppy.example')
    expect(h['Access-Control-Allow-Origin']).toBe('*')
    expect(list(h['Access-Control-Expose-Headers'])).toEqual(
      expect.arrayContaining([
        'location',
        'upload-offset',
        'upload-length',
        'upload-expires',
        'tus-version',
      ]),
    )
    expect(h['Access-Control-Allow-Methods']).toBeUndefined()
    expect(h['Vary']).toBeUndefined()
  })
  test('a request without Origin still gets * (harmless, cacheable)', () => {
    expect(p.responseHeaders(undefined)['Access-Control-Allow-Origin']).toBe('*')
  })
})

describe('policy: a list of origins', () => {
  const p = createCorsPolicy(parseCorsOrigins('https://app.example.com,http://localhost:5173'))
  test('an allowed origin is echoed, with Vary: Origin', () => {
    const pre = p.preflightHeaders('https://app.example.com')
    expect(pre['Access-Control-Allow-Origin']).toBe('https://app.example.com')
    expect(pre['Vary']).toBe('Origin')
    const act = p.responseHeaders('http://localhost:5173')
    expect(act['Access-Control-Allow-Origin']).toBe('http://localhost:5173')
    expect(act['Access-Control-Expose-Headers']).toContain('Upload-Offset')
    expect(act['Vary']).toBe('Origin')
  })
  test('letter case of the Origin does not matter, the echo is what the browser sent', () => {
    const h = p.responseHeaders('https://APP.example.com')
    expect(h['Access-Control-Allow-Origin']).toBe('https://APP.example.com')
  })
  test.each([
    'https://evil.example',
    'https://app.example.com.evil.example',
    'http://app.example.com',
    'https://app.example.com:8443',
    'null',
  ])('%j gets no CORS headers but still Vary: Origin', (origin) => {
    expect(p.preflightHeaders(origin)).toEqual({ Vary: 'Origin' })
    expect(p.responseHeaders(origin)).toEqual({ Vary: 'Origin' })
  })
  test('no Origin → no CORS headers', () => {
    expect(p.responseHeaders(undefined)).toEqual({ Vary: 'Origin' })
  })
})

describe('policy: none', () => {
  const p = createCorsPolicy({ mode: 'none' })
  test('nothing at all', () => {
    expect(p.preflightHeaders('https://a.example')).toEqual({})
    expect(p.responseHeaders('https://a.example')).toEqual({})
  })
})

describe('isPreflight', () => {
  const p = createCorsPolicy({ mode: 'any' })
  test('OPTIONS with Origin and Access-Control-Request-Method is a preflight', () => {
    expect(p.isPreflight('OPTIONS', 'https://a.example', 'PATCH')).toBe(true)
  })
  test('a tus discovery OPTIONS is not', () => {
    expect(p.isPreflight('OPTIONS', undefined, undefined)).toBe(false)
    expect(p.isPreflight('OPTIONS', 'https://a.example', undefined)).toBe(false)
    expect(p.isPreflight('PATCH', 'https://a.example', 'PATCH')).toBe(false)
  })
})
