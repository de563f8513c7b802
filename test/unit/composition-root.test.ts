/**
 * `src/app.ts` is the composition root: it builds every service and hands each family a typed
 * deps object. Nothing under `src/core` or `src/http` may import it (no cycle root → family →
 * root), not even for a type.
 */
import { describe, expect, test } from '@jest/globals'
import { readdirSync, readFileSync } from 'node:fs'
import { dirname, join, relative, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

// Tests run from dist/test/unit; the sources sit three levels up.
const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..')
const APP = join(ROOT, 'src', 'app.ts')

function sourcesUnder(dir: string): string[] {
  const out: string[] = []
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name)
    if (e.isDirectory()) out.push(...sourcesUnder(p))
    else if (e.name.endsWith('.ts')) out.push(p)
  }
  return out
}

// Static imports and re-exports (`import type` included) and dynamic `import('…')`.
const SPECIFIER = /(?:\bfrom\s*|\bimport\s*\(?\s*)['"]([^'"]+)['"]/g

/** The files among `files` that import src/app.ts, with the specifier that does. */
const readSource = (f: string) => readFileSync(f, 'utf8')

function importersOfApp(files: readonly string[], read = readSource): string[] {
  const hits: string[] = []
  for (const file of files) {
    for (const m of read(file).matchAll(SPECIFIER)) {
      const spec = m[1]!
      if (!spec.startsWith('.')) continue
      const target = resolve(dirname(file), spec.replace(/\.js$/, '.ts'))
      if (target === APP) hits.push(`${relative(ROOT, file)}: ${spec}`)
    }
  }
  return hits
}

describe('composition root', () => {
  test('no module under src/core or src/http imports src/app.ts', () => {
    const files = ['core', 'http'].flatMap((d) => sourcesUnder(join(ROOT, 'src', d)))
    expect(files.length).toBeGreaterThan(40)
    expect(importersOfApp(files)).toEqual([])
  })

  test('the scan finds an import of app.ts where there is one (cli/serve.ts)', () => {
    // The process entry (src/main.ts, `ferry serve`) builds the app in src/cli/serve.ts.
    const serve = join(ROOT, 'src', 'cli', 'serve.ts')
    expect(importersOfApp([serve])).toEqual(['src/cli/serve.ts: ../app.js'])
    // The forms a family could use: a type import (what shaman, staging and ingest had), a
    // re-export, a dynamic import; a file of the same name elsewhere is no hit.
    const texts: Record<string, string> = {
      [join(ROOT, 'src/http/shaman/family.ts')]: "import type { Engine } from '../../app.js'",
      [join(ROOT, 'src/core/x.ts')]: "export type { App } from '../app.js'",
      [join(ROOT, 'src/http/y.ts')]: "const app = await import('../app.js')",
      [join(ROOT, 'src/http/z.ts')]: "import { a } from './app.js'",
    }
    expect(importersOfApp(Object.keys(texts), (f) => texts[f]!)).toEqual([
      'src/http/shaman/family.ts: ../../app.js',
      'src/core/x.ts: ../app.js',
      'src/http/y.ts: ../app.js',
    ])
  })
})
