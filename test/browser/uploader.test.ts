/**
 * The browser uploader in a real browser: playwright-core drives Debian's Chromium (installed by
 * npm's pretest, scripts/test-tools.json) against an in-process Ferry behind a proxy that cuts
 * connections mid-body. Chromium's own network throttling (DevTools protocol) slows the upload
 * enough to reload the page in the middle of it.
 *
 * Screenshots go to test/browser/results/ (ignored by git).
 */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals'
import { createHash, randomBytes } from 'node:crypto'
import { accessSync, constants, mkdirSync, writeFileSync } from 'node:fs'
import { delimiter, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { type Browser, type BrowserContext, chromium, type Page } from 'playwright-core'
import { ChaosProxy } from '../chaos/proxy.js'
import { removeDir, startFerry, tempDir, type TestServer } from '../helpers/server.js'

const RESULTS = fileURLToPath(new URL('../../../test/browser/results/', import.meta.url))
const MIB = 1024 * 1024

/** Debian's Chromium on PATH (`chromium`); pretest installs it when missing. */
function chromiumPath(): string {
  for (const dir of (process.env['PATH'] ?? '').split(delimiter)) {
    const p = join(dir, 'chromium')
    try {
      accessSync(p, constants.X_OK)
      return p
    } catch {
      /* not in this directory */
    }
  }
  throw new Error('chromium is not on PATH: run npm test as root once (pretest installs it)')
}

async function until<T>(what: string, timeoutMs: number, probe: () => Promise<T | null>) {
  const end = Date.now() + timeoutMs
  for (;;) {
    const v = await probe()
    if (v !== null) return v
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 100))
  }
}

/** What the page did on the wire, for one page load. */
interface Wire {
  creates: number
  /** Upload-Offset of each PATCH, in order. */
  patchOffsets: number[]
}

function watchWire(page: Page): Wire {
  const wire: Wire = { creates: 0, patchOffsets: [] }
  page.on('request', (req) => {
    if (!new URL(req.url()).pathname.startsWith('/files/')) return
    if (req.method() === 'POST') wire.creates++
    if (req.method() === 'PATCH') wire.patchOffsets.push(Number(req.headers()['upload-offset']))
  })
  return wire
}

/** Errors the page's own code raised or logged (network failures from the proxy aside). */
function watchErrors(page: Page): string[] {
  const errors: string[] = []
  page.on('pageerror', (err) => errors.push(`pageerror: ${err.message}`))
  page.on('console', (msg) => {
    if (msg.type() !== 'error') return
    // Chromium logs every cut connection as a failed resource; the upload retries them.
    if (/^Failed to load resource|net::ERR_/.test(msg.text())) return
    errors.push(`console: ${msg.text()}`)
  })
  return errors
}

/** Drops a file made in the page on the Dashboard, as a drag from the desktop would. */
async function dropFile(page: Page, name: string, text: string): Promise<void> {
  const target = page.locator('.uppy-Dashboard-inner')
  await target.waitFor()
  // Playwright cannot drag a file from the desktop: the drop event carries one built here.
  const dataTransfer = await page.evaluateHandle(`(() => {
    const dt = new DataTransfer()
    dt.items.add(new File([${JSON.stringify(text)}], ${JSON.stringify(name)}, { type: 'text/plain' }))
    return dt
  })()`)
  await target.dispatchEvent('dragenter', { dataTransfer })
  await target.dispatchEvent('dragover', { dataTransfer })
  await target.dispatchEvent('drop', { dataTransfer })
}

describe('browser uploader in Chromium', () => {
  let ferry: TestServer
  let browser: Browser
  let work: string
  beforeAll(async () => {
    mkdirSync(RESULTS, { recursive: true })
    work = tempDir('ferry-browser-')
    ferry = await startFerry()
    browser = await chromium.launch({
      executablePath: chromiumPath(),
      args: ['--no-sandbox'],
      headless: true,
    })
  })
  afterAll(async () => {
    await browser?.close()
    await ferry?.close()
    if (ferry) removeDir(ferry.dataDir)
    if (work) removeDir(work)
  })

  test('the page renders the Dashboard without errors', async () => {
    const context = await browser.newContext()
    try {
      const page = await context.newPage()
      const errors: string[] = []
      page.on('pageerror', (err) => errors.push(err.message))
      page.on('console', (msg) => msg.type() === 'error' && errors.push(msg.text()))
      const res = await page.goto(`${ferry.url}/`)
      expect(res?.status()).toBe(200)
      await page.locator('.uppy-Dashboard').waitFor()
      await expect(page.locator('.uppy-Dashboard-AddFiles').isVisible()).resolves.toBe(true)
      expect(await page.title()).toBe('Ferry: upload files')
      await page.screenshot({ path: join(RESULTS, 'uploader-empty.png') })
      expect(errors).toEqual([])
    } finally {
      await context.close()
    }
  })

  test('a 40 MiB file through cut connections, a reload and a pause: resumed, sha256 equal', async () => {
    const size = 40 * MIB
    const data = randomBytes(size)
    const sha256 = createHash('sha256').update(data).digest('hex')
    const file = join(work, 'big-upload.bin')
    writeFileSync(file, data)

    // Every connection is cut once 6 MiB of it went up, until two cuts fired: the page's loads
    // are small, so the cuts land in PATCH bodies.
    let proxy: ChaosProxy | null = null
    proxy = await ChaosProxy.start(Number(new URL(ferry.url).port), () =>
      (proxy?.counts.cut ?? 0) < 2
        ? { kind: 'cut', dir: 'up', afterBytes: 6 * MIB }
        : { kind: 'pass' },
    )
    const context: BrowserContext = await browser.newContext()
    try {
      const page = await context.newPage()
      const errors = watchErrors(page)
      const throttle = async () => {
        const cdp = await context.newCDPSession(page)
        await cdp.send('Network.enable')
        await cdp.send('Network.emulateNetworkConditions', {
          offline: false,
          latency: 0,
          downloadThroughput: -1,
          uploadThroughput: 6 * MIB,
        })
      }
      await throttle()
      let wire = watchWire(page)
      await page.goto(`${proxy.url}/`)
      await page.locator('.uppy-Dashboard-input').first().setInputFiles(file)

      /** The upload's URL, as tus-js-client stored it for resuming (the page's localStorage). */
      // Run in the page (a string: this project's TypeScript has no DOM types).
      const storedUrl = () =>
        page.evaluate(`(() => {
        for (let i = 0; i < localStorage.length; i++) {
          const key = localStorage.key(i)
          if (key.startsWith('tus::')) return JSON.parse(localStorage.getItem(key)).uploadUrl ?? null
        }
        return null
      })()`) as Promise<string | null>
      /** The server's offset, asked directly (not through the proxy). */
      const serverOffset = async (uploadUrl: string) => {
        const u = new URL(uploadUrl)
        const res = await fetch(`${ferry.url}${u.pathname}`, {
          method: 'HEAD',
          headers: { 'Tus-Resumable': '1.0.0' },
        })
        return Number(res.headers.get('upload-offset'))
      }
      const uploadUrl = await until('the stored upload URL', 20_000, storedUrl)
      // The page's own progress (the status bar): the server learns a PATCH's bytes as it ends.
      const progress = page.locator('.uppy-StatusBar-progress')
      await until('half the file sent', 60_000, async () => {
        const now = Number(await progress.getAttribute('aria-valuenow'))
        return now >= 50 ? now : null
      })
      // Two at least: a connection the page opened before the cuts may still carry a third.
      expect(proxy.counts.cut).toBeGreaterThanOrEqual(2)
      expect(wire.creates).toBe(1)

      // A reload forgets the page's files but not localStorage: the same file added again
      // continues the same upload from where the server is.
      const wireBeforeReload = wire
      await page.reload()
      await throttle()
      wire = watchWire(page)
      expect(await storedUrl()).toBe(uploadUrl)
      await page.locator('.uppy-Dashboard-input').first().setInputFiles(file)
      await until('a PATCH after the reload', 20_000, async () => wire.patchOffsets[0] ?? null)
      expect(wire.creates).toBe(0)
      // Past both cuts (6 and 12 MiB went up before them), so not from zero.
      expect(wire.patchOffsets[0]).toBeGreaterThanOrEqual(12 * MIB - MIB)
      expect(wire.patchOffsets[0]).toBeLessThan(size)

      // Pause, once a few MiB went up in this PATCH: the server keeps them, and its offset stops
      // moving; resume: it moves on from there.
      const pauseAt = ((wire.patchOffsets[0]! + 4 * MIB) / size) * 100
      await until('4 MiB more sent', 60_000, async () => {
        const now = Number(await progress.getAttribute('aria-valuenow'))
        return now >= pauseAt ? now : null
      })
      const pause = page.getByRole('button', { name: 'Pause upload' })
      await pause.click()
      const resume = page.getByRole('button', { name: 'Resume upload' })
      await resume.waitFor()
      // The aborted PATCH's prefix is kept once the server sees it end: wait for the offset to
      // settle, then it must not move while paused.
      const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))
      const paused = await until('the paused offset to settle', 15_000, async () => {
        const a = await serverOffset(uploadUrl)
        await sleep(500)
        return (await serverOffset(uploadUrl)) === a ? a : null
      })
      expect(paused).toBeGreaterThan(wire.patchOffsets[0]!)
      expect(paused).toBeLessThan(size)
      await sleep(1000)
      expect(await serverOffset(uploadUrl)).toBe(paused)
      const patchesBeforeResume = wire.patchOffsets.length
      await resume.click()

      const link = page.locator('#finished a[data-file="big-upload.bin"]')
      await link.waitFor({ timeout: 60_000 })
      const href = await link.getAttribute('href')
      expect(href).toBe(uploadUrl)
      expect(wire.creates).toBe(0)
      // Resume continued from the paused offset exactly.
      expect(wire.patchOffsets[patchesBeforeResume]).toBe(paused)

      // The bytes as the server stores them, from the server itself.
      const stored = await fetch(`${ferry.url}${new URL(href!).pathname}`)
      expect(stored.status).toBe(200)
      const body = Buffer.from(await stored.arrayBuffer())
      expect(body.length).toBe(size)
      if (createHash('sha256').update(body).digest('hex') !== sha256) {
        // Where the stored bytes go wrong, for whoever reads the failure.
        const ranges: string[] = []
        let at = -1
        for (let i = 0; i <= size; i++) {
          const bad = i < size && body[i] !== data[i]
          if (bad && at < 0) at = i
          if (!bad && at >= 0) {
            ranges.push(`${at}-${i - 1}`)
            at = -1
          }
        }
        const first = Number(ranges[0]?.split('-')[0])
        const last = Number(ranges.at(-1)?.split('-')[1])
        // Is the wrong stretch the file's bytes from elsewhere (a shift), or zeros?
        const probe = body.subarray(first, first + 64)
        writeFileSync(
          join(RESULTS, 'uploader-mismatch.json'),
          JSON.stringify(
            {
              count: ranges.length,
              first,
              last,
              ranges: ranges.slice(0, 5),
              zeros: probe.every((b) => b === 0),
              foundAt: data.indexOf(probe),
              storedAfterMismatch: body
                .subarray(last + 1, last + 65)
                .equals(data.subarray(last + 1, last + 65)),
              cuts: proxy.counts,
              patchOffsets: wire.patchOffsets,
              paused,
              patchOffsetsBeforeReload: wireBeforeReload.patchOffsets,
            },
            null,
            2,
          ),
        )
      }
      expect(createHash('sha256').update(body).digest('hex')).toBe(sha256)
      // A finished upload's fingerprint is dropped: adding the file again would start afresh.
      expect(await storedUrl()).toBeNull()

      await page.locator('.uppy-StatusBar.is-complete').waitFor()
      await page.screenshot({ path: join(RESULTS, 'uploader-finished.png'), fullPage: true })
      // What happened on the wire, beside the screenshot, for whoever reads a failure.
      writeFileSync(
        join(RESULTS, 'uploader-run.json'),
        JSON.stringify(
          {
            size,
            cuts: proxy.counts,
            patchOffsetsAfterReload: wire.patchOffsets,
            paused,
          },
          null,
          2,
        ),
      )
      // The Finished list outlives a reload (localStorage) until it is cleared.
      await page.reload()
      await expect(link.getAttribute('href')).resolves.toBe(uploadUrl)
      await page.getByRole('button', { name: 'clear it' }).click()
      await expect(page.locator('#finished a').count()).resolves.toBe(0)
      await expect(page.locator('#finished-section').isHidden()).resolves.toBe(true)
      await page.reload()
      await page.locator('.uppy-Dashboard').waitFor()
      await expect(page.locator('#finished a').count()).resolves.toBe(0)
      expect(errors).toEqual([])
    } finally {
      await context.close()
      await proxy.close()
    }
  }, 180_000)

  test('a file dropped on the Dashboard uploads and gets its link', async () => {
    const context = await browser.newContext()
    try {
      const page = await context.newPage()
      const errors = watchErrors(page)
      await page.goto(`${ferry.url}/`)
      await dropFile(page, 'dropped.txt', 'dropped on the page\n')
      const link = page.locator('#finished a[data-file="dropped.txt"]')
      await link.waitFor({ timeout: 20_000 })
      const href = await link.getAttribute('href')
      const res = await fetch(`${ferry.url}${new URL(href!).pathname}`)
      expect(await res.text()).toBe('dropped on the page\n')
      expect(errors).toEqual([])
    } finally {
      await context.close()
    }
  })

  test('a file over Tus-Max-Size is refused when added, before any request', async () => {
    const small = await startFerry({ FERRY_TUS_MAX_SIZE: '1000' })
    const context = await browser.newContext()
    try {
      const page = await context.newPage()
      const wire = watchWire(page)
      await page.goto(`${small.url}/`)
      await dropFile(page, 'too-big.txt', 'x'.repeat(2000))
      await page.getByText('exceeds maximum allowed size of 1000 B').first().waitFor()
      await dropFile(page, 'fits.txt', 'y'.repeat(1000))
      const link = page.locator('#finished a[data-file="fits.txt"]')
      await link.waitFor({ timeout: 20_000 })
      expect(wire.creates).toBe(1)
      expect(await page.locator('#finished a').count()).toBe(1)
    } finally {
      await context.close()
      await small.close()
      removeDir(small.dataDir)
    }
  })
})
