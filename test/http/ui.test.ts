/**
 * The browser uploader's static files over real HTTP: types, ETag and Cache-Control, compressed
 * variants, methods, FERRY_UI / FERRY_UI_PATH, and request paths that try to leave the page's
 * directory (sent byte for byte, since fetch would normalise them away).
 */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals'
import { brotliDecompressSync, gunzipSync } from 'node:zlib'
import { loadConfig } from '../../src/config/config.js'
import { RawConn } from '../helpers/raw-http.js'
import { removeDir, startFerry, type TestServer } from '../helpers/server.js'

async function raw(base: string, target: string): Promise<number> {
  const conn = await RawConn.open(base)
  try {
    await conn.head('GET', target, {})
    return (await conn.answer()).status
  } finally {
    conn.close()
  }
}

/** The page's asset URLs, as its HTML names them. */
function assetsOf(html: string): { js: string; css: string } {
  const js = /<script type="module" src="(assets\/uploader-[A-Za-z0-9]+\.js)"/.exec(html)?.[1]
  const css = /<link rel="stylesheet" href="(assets\/uploader-[A-Za-z0-9]+\.css)"/.exec(html)?.[1]
  if (js === undefined || css === undefined) throw new Error(`no assets in ${html}`)
  return { js, css }
}

describe('browser uploader at /', () => {
  let ferry: TestServer
  let html: string
  beforeAll(async () => {
    ferry = await startFerry()
    html = await (await fetch(`${ferry.url}/`)).text()
  })
  afterAll(async () => {
    await ferry.close()
    removeDir(ferry.dataDir)
  })

  test('the page: HTML, revalidated on every visit, the tus endpoint filled in', async () => {
    const res = await fetch(`${ferry.url}/`)
    expect(res.status).toBe(200)
    expect(res.headers.get('content-type')).toBe('text/html; charset=utf-8')
    expect(res.headers.get('cache-control')).toBe('no-cache')
    expect(res.headers.get('x-content-type-options')).toBe('nosniff')
    expect(res.headers.get('content-security-policy')).toContain("connect-src 'self'")
    const etag = res.headers.get('etag')
    expect(etag).toMatch(/^"[A-Za-z0-9_-]+"$/)
    const body = await res.text()
    expect(body).toContain('<meta name="ferry-tus-endpoint" content="/files/">')
    // FERRY_MAX_UPLOAD_BYTES' default, 64 GiB, as tus's Tus-Max-Size.
    expect(body).toContain(`<meta name="ferry-max-file-bytes" content="${64 * 1024 ** 3}">`)
    expect(body).not.toContain('{{')
    const again = await fetch(`${ferry.url}/`, { headers: { 'If-None-Match': etag! } })
    expect(again.status).toBe(304)
    expect(again.headers.get('etag')).toBe(etag)
    expect(await again.text()).toBe('')
    const named = await fetch(`${ferry.url}/index.html`)
    expect(named.status).toBe(200)
    expect(named.headers.get('etag')).toBe(etag)
  })

  test('assets: their types, immutable, compressed when asked', async () => {
    const { js, css } = assetsOf(html)
    const plain = await fetch(`${ferry.url}/${js}`, { headers: { 'Accept-Encoding': 'identity' } })
    expect(plain.status).toBe(200)
    expect(plain.headers.get('content-type')).toBe('text/javascript; charset=utf-8')
    expect(plain.headers.get('cache-control')).toBe('public, max-age=31536000, immutable')
    expect(plain.headers.get('content-encoding')).toBeNull()
    expect(plain.headers.get('vary')).toBe('Accept-Encoding')
    const code = Buffer.from(await plain.arrayBuffer())
    expect(code.toString()).toContain('Uppy')
    const sheet = await fetch(`${ferry.url}/${css}`)
    expect(sheet.headers.get('content-type')).toBe('text/css; charset=utf-8')
    expect(await sheet.text()).toContain('.uppy-Dashboard')

    // fetch decodes on its own; a raw connection shows the bytes as sent.
    for (const [coding, decode] of [
      ['br', brotliDecompressSync],
      ['gzip', gunzipSync],
    ] as const) {
      const conn = await RawConn.open(ferry.url)
      await conn.head('GET', `/${js}`, { 'Accept-Encoding': coding })
      const a = await conn.answer()
      conn.close()
      expect(a.status).toBe(200)
      expect(a.headers['content-encoding']).toBe(coding)
      expect(a.body.length).toBeLessThan(code.length / 2)
      expect(decode(a.body).equals(code)).toBe(true)
      expect(a.headers['etag']).not.toBe(plain.headers.get('etag'))
      // Refused with q=0: the next coding, or none.
      const conn2 = await RawConn.open(ferry.url)
      await conn2.head('GET', `/${js}`, { 'Accept-Encoding': `${coding};q=0` })
      const b = await conn2.answer()
      conn2.close()
      expect(b.headers['content-encoding']).not.toBe(coding)
    }
    const head = await fetch(`${ferry.url}/${js}`, { method: 'HEAD' })
    expect(head.status).toBe(200)
    expect(await head.text()).toBe('')
  })

  test('methods other than GET and HEAD: 405 with Allow', async () => {
    const res = await fetch(`${ferry.url}/`, { method: 'POST', body: 'x' })
    expect(res.status).toBe(405)
    expect(res.headers.get('allow')).toBe('GET, HEAD')
  })

  test('only the built names are served: no way out of the directory', async () => {
    const { js } = assetsOf(html)
    const port = new URL(ferry.url).port
    expect(port).not.toBe('')
    for (const target of [
      '/assets/../index.html',
      '/assets/../../package.json',
      '/../package.json',
      '/assets/..%2f..%2fpackage.json',
      '/assets/%2e%2e/%2e%2e/package.json',
      '/assets/%2e%2e%2findex.html',
      `/${js}/..`,
      `/${js}%00`,
      '//etc/passwd',
      '/assets/',
      '/assets',
      '/web/index.html',
      '/dist/web/index.html',
      '/index.htm',
      `/${js.toUpperCase()}`,
      '/assets/uploader.ts',
      `/./${js}`,
    ]) {
      expect([target, await raw(ferry.url, target)]).toEqual([target, 404])
    }
    // The API families keep their paths; an unknown path is still the JSON 404.
    const other = await fetch(`${ferry.url}/nothing-here`)
    expect(other.status).toBe(404)
    expect(await other.json()).toEqual({ message: 'not found' })
    const tus = await fetch(`${ferry.url}/files/`, { method: 'OPTIONS' })
    expect(tus.headers.get('tus-resumable')).toBe('1.0.0')
  })
})

describe('FERRY_UI and FERRY_UI_PATH', () => {
  test('FERRY_UI_PATH=/upload/: the page there, /upload redirected, / not served', async () => {
    const ferry = await startFerry({ FERRY_UI_PATH: '/upload' })
    try {
      const page = await fetch(`${ferry.url}/upload/`)
      expect(page.status).toBe(200)
      const html = await page.text()
      const { js } = assetsOf(html)
      expect((await fetch(`${ferry.url}/upload/${js}`)).status).toBe(200)
      expect((await fetch(`${ferry.url}/${js}`)).status).toBe(404)
      expect((await fetch(`${ferry.url}/`)).status).toBe(404)
      const bare = await fetch(`${ferry.url}/upload?x=1`, { redirect: 'manual' })
      expect(bare.status).toBe(308)
      expect(bare.headers.get('location')).toBe('/upload/?x=1')
      expect((await fetch(`${ferry.url}/uploads`)).status).toBe(404)
    } finally {
      await ferry.close()
      removeDir(ferry.dataDir)
    }
  })

  test('FERRY_UI=off: no page', async () => {
    const ferry = await startFerry({ FERRY_UI: 'off' })
    try {
      expect((await fetch(`${ferry.url}/`)).status).toBe(404)
      expect((await fetch(`${ferry.url}/index.html`)).status).toBe(404)
    } finally {
      await ferry.close()
      removeDir(ferry.dataDir)
    }
  })

  test('FERRY_PUBLIC_URL: the page calls the tus endpoint there, and may connect to it', async () => {
    const ferry = await startFerry({ FERRY_PUBLIC_URL: 'https://up.example.org/ferry' })
    try {
      const res = await fetch(`${ferry.url}/`)
      expect(await res.text()).toContain('content="https://up.example.org/ferry/files/"')
      expect(res.headers.get('content-security-policy')).toContain(
        "connect-src 'self' https://up.example.org;",
      )
    } finally {
      await ferry.close()
      removeDir(ferry.dataDir)
    }
  })

  test('configuration: defaults, off, paths, and what is refused', () => {
    expect(loadConfig({}).ui).toEqual({ enabled: true, path: '/' })
    expect(loadConfig({ FERRY_UI: 'off' }).ui.enabled).toBe(false)
    expect(loadConfig({ FERRY_UI: 'ON', FERRY_UI_PATH: 'a/b/' }).ui).toEqual({
      enabled: true,
      path: '/a/b/',
    })
    // Without tus the page has nothing to talk to: off by default, refused when asked for.
    expect(loadConfig({ FERRY_FAMILIES: 'imagestore' }).ui.enabled).toBe(false)
    expect(() => loadConfig({ FERRY_FAMILIES: 'imagestore', FERRY_UI: 'on' })).toThrow(/tus/)
    expect(() => loadConfig({ FERRY_UI: 'yes' })).toThrow(/FERRY_UI must be on or off/)
    expect(() => loadConfig({ FERRY_UI_PATH: '/a/../b/' })).toThrow(/FERRY_UI_PATH/)
    expect(() => loadConfig({ FERRY_UI_PATH: '/files/' })).toThrow(/overlaps the tus endpoint/)
    expect(() => loadConfig({ FERRY_UI_PATH: '/files/ui/' })).toThrow(/overlaps/)
    expect(() => loadConfig({ FERRY_TUS_PATH: '/up/files/', FERRY_UI_PATH: '/up/' })).toThrow(
      /overlaps/,
    )
  })
})
