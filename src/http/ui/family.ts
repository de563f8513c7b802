/**
 * The browser uploader's page and assets at FERRY_UI_PATH (`/`), as a family mounted like the
 * API families. scripts/build-web.mjs builds them into dist/web/ (`npm run build`):
 *
 *   GET <path>                        index.html, the tus endpoint filled in; `no-cache`: the
 *   GET <path>index.html              browser revalidates it (ETag, 304) on every visit
 *   GET <path>assets/<name>-<hash>.*  the bundle, styles, source maps; immutable for a year,
 *                                     since a new build gives them new names
 *
 * Only the names found in dist/web when the server starts are served, from memory: a request
 * path is looked up, never joined to a directory, so `..` and encoded separators find nothing.
 */
import { createHash } from 'node:crypto'
import { readdir, readFile } from 'node:fs/promises'
import { extname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { UploadError } from '../../core/errors.js'
import type { Family, RequestContext } from '../context.js'
import { sendEmpty, sendJson, sendText } from '../respond.js'

/** Where `npm run build` puts the page: dist/web, beside dist/src. */
export const DEFAULT_UI_DIR = fileURLToPath(new URL('../../../web/', import.meta.url))

const TYPES: Readonly<Record<string, string>> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
  '.txt': 'text/plain; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.woff2': 'font/woff2',
}

/** Content codings the build writes beside an asset (`x.js.br`), in order of preference. */
const CODINGS = [
  ['br', '.br'],
  ['gzip', '.gz'],
] as const
type Coding = (typeof CODINGS)[number][0]

const IMMUTABLE = 'public, max-age=31536000, immutable'

/**
 * The page may load only its own assets and talk only to its own origin; Uppy's Dashboard sets
 * inline styles and shows previews from blob: and data: URLs.
 */
function pageCsp(tusEndpoint: string): string {
  // An absolute endpoint (FERRY_PUBLIC_URL) may be another origin than the one the page came from.
  const tusOrigin = /^https?:\/\//.test(tusEndpoint) ? ` ${new URL(tusEndpoint).origin}` : ''
  return [
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self' 'unsafe-inline'",
    "img-src 'self' data: blob:",
    `connect-src 'self'${tusOrigin}`,
    "object-src 'none'",
    "base-uri 'none'",
    "frame-ancestors 'none'",
    "form-action 'none'",
  ].join('; ')
}

interface Representation {
  readonly body: Buffer
  readonly etag: string
}

interface Resource {
  readonly type: string
  readonly cacheControl: string
  readonly identity: Representation
  readonly encoded: ReadonlyMap<Coding, Representation>
  readonly extra: Readonly<Record<string, string>>
}

export interface UiOptions {
  /** FERRY_UI_PATH, with a `/` at each end. */
  readonly path: string
  /** The tus endpoint as the page should call it: a path, or an absolute URL (FERRY_PUBLIC_URL). */
  readonly tusEndpoint: string
  /** Tus-Max-Size: the page refuses larger files before it starts them. */
  readonly maxFileBytes: number
  /** The built page; DEFAULT_UI_DIR. */
  readonly dir?: string
}

function representation(body: Buffer, suffix: string): Representation {
  const digest = createHash('sha256').update(body).digest('base64url').slice(0, 27)
  return { body, etag: `"${digest}${suffix}"` }
}

const escapeAttr = (s: string) =>
  s.replace(/&/g, '&amp;').replace(/"/g, '&quot;').replace(/</g, '&lt;').replace(/>/g, '&gt;')

/**
 * Reads the built page into memory. Null when it was never built (`tsc -b` alone): the caller
 * says so in the log and runs without the page rather than failing every API with it.
 */
export async function loadUi(opts: UiOptions): Promise<Family | null> {
  const dir = opts.dir ?? DEFAULT_UI_DIR
  let page: string
  try {
    page = await readFile(join(dir, 'index.html'), 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null
    throw err
  }
  const resources = new Map<string, Resource>()
  const index: Resource = {
    type: TYPES['.html']!,
    cacheControl: 'no-cache',
    identity: representation(
      Buffer.from(
        page
          .replace('{{TUS_ENDPOINT}}', escapeAttr(opts.tusEndpoint))
          .replace('{{MAX_FILE_BYTES}}', String(opts.maxFileBytes)),
      ),
      '',
    ),
    encoded: new Map(),
    extra: {
      'Content-Security-Policy': pageCsp(opts.tusEndpoint),
      'Referrer-Policy': 'no-referrer',
      'X-Frame-Options': 'DENY',
    },
  }
  resources.set(opts.path, index)
  resources.set(`${opts.path}index.html`, index)
  const names = await readdir(join(dir, 'assets'))
  const present = new Set(names)
  for (const name of names) {
    if (CODINGS.some(([, ext]) => name.endsWith(ext))) continue
    const file = join(dir, 'assets', name)
    const encoded = new Map<Coding, Representation>()
    for (const [coding, ext] of CODINGS) {
      if (present.has(name + ext)) {
        encoded.set(coding, representation(await readFile(file + ext), `-${coding}`))
      }
    }
    resources.set(`${opts.path}assets/${name}`, {
      type: TYPES[extname(name)] ?? 'application/octet-stream',
      cacheControl: IMMUTABLE,
      identity: representation(await readFile(file), ''),
      encoded,
      extra: {},
    })
  }
  return createUiFamily(opts.path, resources)
}

/** The codings the client accepts (`Accept-Encoding`), without those it refuses with q=0. */
function accepted(header: string | undefined): Set<string> {
  const out = new Set<string>()
  for (const part of (header ?? '').split(',')) {
    const [name, ...params] = part.trim().toLowerCase().split(';')
    if (!name) continue
    const q = params.map((p) => p.trim()).find((p) => p.startsWith('q='))
    if (q !== undefined && Number(q.slice(2)) === 0) continue
    out.add(name)
  }
  return out
}

/** RFC 9110 §13.1.2: If-None-Match matches by weak comparison (a W/ prefix is ignored). */
function noneMatch(header: string | undefined, etag: string): boolean {
  if (header === undefined) return false
  if (header.trim() === '*') return true
  return header.split(',').some((t) => t.trim().replace(/^W\//, '') === etag)
}

function createUiFamily(path: string, resources: ReadonlyMap<string, Resource>): Family {
  // '/' takes whatever no longer prefix took; '/upload/' also takes '/upload' (to redirect it).
  const prefix = path === '/' ? '/' : path.slice(0, -1)
  return {
    name: 'ui',
    prefix,
    async handle(ctx: RequestContext): Promise<boolean> {
      const { req, res, rawPath } = ctx
      if (path !== '/' && rawPath === prefix) {
        // Relative asset URLs resolve against the directory: the page lives at `<path>`.
        const query = ctx.url.search
        sendEmpty(res, 308, { Location: `${path}${query}` })
        return true
      }
      const found = resources.get(rawPath)
      if (found === undefined) return false
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        sendText(res, 405, 'method not allowed', undefined, { Allow: 'GET, HEAD' })
        return true
      }
      const codings = accepted(req.headers['accept-encoding'])
      let coding: Coding | null = null
      for (const [c] of CODINGS) {
        if (found.encoded.has(c) && codings.has(c)) {
          coding = c
          break
        }
      }
      const rep = coding === null ? found.identity : found.encoded.get(coding)!
      const headers: Record<string, string | number> = {
        'Content-Type': found.type,
        'Cache-Control': found.cacheControl,
        ETag: rep.etag,
        'X-Content-Type-Options': 'nosniff',
        ...found.extra,
        ...(found.encoded.size > 0 ? { Vary: 'Accept-Encoding' } : {}),
        ...(coding !== null ? { 'Content-Encoding': coding } : {}),
      }
      if (noneMatch(req.headers['if-none-match'], rep.etag)) {
        sendEmpty(res, 304, headers)
        return true
      }
      res.writeHead(200, { ...headers, 'Content-Length': rep.body.length })
      res.end(req.method === 'HEAD' ? undefined : rep.body)
      return true
    },
    sendError(ctx: RequestContext, err: unknown): void {
      // The edge's answers for a broken or slow request body, as for a path no family takes.
      if (err instanceof UploadError) {
        const status = err.code === 'ERR_BODY_TIMEOUT' ? 408 : 400
        sendJson(ctx.res, status, { message: err.message })
        return
      }
      ctx.log.error({ err }, 'ui request failed')
      sendJson(ctx.res, 500, { message: 'internal error' })
    },
  }
}
