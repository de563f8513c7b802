#!/usr/bin/env node
/**
 * Builds the browser uploader (web/) into dist/web/ with esbuild, part of `npm run build`.
 *
 *   dist/web/assets/uploader-<hash>.js    the bundle: Uppy core, Dashboard, tus plugin
 *   dist/web/assets/uploader-<hash>.css   Uppy's styles and the page's own
 *   dist/web/assets/*.br, *.gz           the same, compressed once here rather than per request
 *   dist/web/index.html                   the page, with the asset names filled in; the server
 *                                         fills in the tus endpoint when it loads it
 *
 * The hash in an asset's name changes with its content, so the server can tell browsers to keep
 * assets forever and still never serve a stale one: only index.html is revalidated.
 */
import { readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs'
import { basename, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { brotliCompressSync, constants, gzipSync } from 'node:zlib'
import { build } from 'esbuild'

const root = fileURLToPath(new URL('..', import.meta.url))
const out = join(root, 'dist', 'web')

rmSync(out, { recursive: true, force: true })
mkdirSync(join(out, 'assets'), { recursive: true })

const result = await build({
  entryPoints: [join(root, 'web', 'uploader.ts')],
  bundle: true,
  format: 'esm',
  platform: 'browser',
  target: ['es2020', 'chrome100', 'firefox100', 'safari15'],
  minify: true,
  sourcemap: 'linked',
  outdir: join(out, 'assets'),
  entryNames: '[name]-[hash]',
  assetNames: '[name]-[hash]',
  metafile: true,
  legalComments: 'linked',
  logLevel: 'warning',
  define: { 'process.env.NODE_ENV': '"production"' },
})

const outputs = Object.keys(result.metafile.outputs).map((p) => basename(p))
const pick = (ext) => {
  const found = outputs.filter((n) => n.startsWith('uploader-') && n.endsWith(ext))
  if (found.length !== 1) throw new Error(`build-web: expected one uploader-*${ext}, got ${found}`)
  return found[0]
}
const page = readFileSync(join(root, 'web', 'index.html'), 'utf8')
  .replace('{{JS}}', `assets/${pick('.js')}`)
  .replace('{{CSS}}', `assets/${pick('.css')}`)
writeFileSync(join(out, 'index.html'), page)
for (const name of outputs.filter((n) => n.endsWith('.js') || n.endsWith('.css'))) {
  const file = join(out, 'assets', name)
  const body = readFileSync(file)
  writeFileSync(`${file}.gz`, gzipSync(body, { level: 9 }))
  writeFileSync(
    `${file}.br`,
    brotliCompressSync(body, {
      params: {
        [constants.BROTLI_PARAM_QUALITY]: 11,
        [constants.BROTLI_PARAM_SIZE_HINT]: body.length,
      },
    }),
  )
}
process.stderr.write(`build-web: dist/web (${outputs.join(', ')})\n`)
