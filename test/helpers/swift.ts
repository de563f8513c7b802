/**
 * The real S3 store of the S3 tests: one private OpenStack Swift (s3api) per test run, started by
 * the first test file that asks for it (scripts/swift-s3.mjs) and stopped by global-teardown, so
 * a run without S3 tests starts none. Jest's workers are separate processes: they share the one
 * Swift through a run directory global-setup makes (FERRY_TEST_SWIFT_RUN), a mkdir lock around
 * the start, and a state file. FERRY_TEST_S3_ENDPOINT points the tests at a Swift already
 * running instead (`node scripts/swift-s3.mjs start` prints one).
 *
 * Each test file takes its own bucket (`testBucket()`). Convention: a test file that needs Swift
 * has `s3` in its name (or is test/contract/object-store.test.ts); `npm run test:s3` runs those.
 */
import { randomUUID } from 'node:crypto'
import { mkdirSync, readFileSync, rmdirSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'

export interface SwiftEndpoint {
  readonly endpoint: string
  readonly region: string
  readonly accessKeyId: string
  readonly secretAccessKey: string
}

interface StartedSwift extends SwiftEndpoint {
  readonly dir: string
  readonly pids: number[]
  readonly startMs: number
  stop(): Promise<void>
}

export interface SwiftModule {
  startSwift(opts?: {
    dir?: string
    detached?: boolean
    keep?: boolean
    timeoutMs?: number
  }): Promise<StartedSwift>
  stopSwift(dir: string): Promise<void>
  createBucket(endpoint: string, bucket: string): Promise<void>
}

/** scripts/swift-s3.mjs (plain JS, outside the compiled tree: dist/test/helpers → repo root). */
export async function swiftModule(): Promise<SwiftModule> {
  const url = new URL('../../../scripts/swift-s3.mjs', import.meta.url)
  return (await import(url.href)) as SwiftModule
}

const STATE = 'swift.json'
const LOCK = 'swift.lock'
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

function readState(run: string): SwiftEndpoint | null {
  try {
    return JSON.parse(readFileSync(join(run, STATE), 'utf8')) as SwiftEndpoint
  } catch {
    return null
  }
}

let mine: Promise<SwiftEndpoint> | null = null

async function shared(run: string): Promise<SwiftEndpoint> {
  const deadline = Date.now() + 180_000
  for (;;) {
    const ready = readState(run)
    if (ready) return ready
    try {
      mkdirSync(join(run, LOCK))
    } catch {
      // Another worker is starting it; a lock older than the deadline is a dead starter's.
      const age = Date.now() - statSync(join(run, LOCK), { throwIfNoEntry: false })!.mtimeMs
      if (Date.now() > deadline || age > 180_000) {
        throw new Error(`the test Swift in ${run} did not start in time (another worker)`)
      }
      await sleep(200)
      continue
    }
    try {
      const again = readState(run)
      if (again) return again
      const mod = await swiftModule()
      // A loaded 2-core machine has taken 70 s to bring Swift up; the callers wait 180 s.
      const s = await mod.startSwift({
        dir: join(run, 'swift'),
        detached: true,
        keep: true,
        timeoutMs: 150_000,
      })
      const info: SwiftEndpoint & { dir: string; startMs: number } = {
        endpoint: s.endpoint,
        region: s.region,
        accessKeyId: s.accessKeyId,
        secretAccessKey: s.secretAccessKey,
        dir: s.dir,
        startMs: s.startMs,
      }
      writeFileSync(join(run, STATE), JSON.stringify(info))
      return info
    } finally {
      rmdirSync(join(run, LOCK))
    }
  }
}

/**
 * The run's Swift, started on first use. It also puts the test account's keys in this process's
 * AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY: Ferry reads credentials only through the SDK's
 * default provider chain, as in production.
 */
export async function testSwift(): Promise<SwiftEndpoint> {
  if (!mine) {
    const given = process.env['FERRY_TEST_S3_ENDPOINT']
    const run = process.env['FERRY_TEST_SWIFT_RUN']
    if (given) {
      mine = Promise.resolve({
        endpoint: given,
        region: 'us-east-1',
        accessKeyId: 'test:tester',
        secretAccessKey: 'testing',
      })
    } else if (run) {
      mine = shared(run)
    } else {
      mine = Promise.reject(
        new Error('no test Swift: global-setup did not run and FERRY_TEST_S3_ENDPOINT is unset'),
      )
    }
  }
  const s = await mine
  process.env['AWS_ACCESS_KEY_ID'] = s.accessKeyId
  process.env['AWS_SECRET_ACCESS_KEY'] = s.secretAccessKey
  return s
}

/** A new bucket of its own on the run's Swift (a test file's own). */
export async function testBucket(): Promise<SwiftEndpoint & { readonly bucket: string }> {
  const s = await testSwift()
  const bucket = `ferry-t-${randomUUID().slice(0, 13)}`
  await (await swiftModule()).createBucket(s.endpoint, bucket)
  return { ...s, bucket }
}

/** global-teardown: stops the run's Swift if a test started one. */
export async function stopRunSwift(run: string): Promise<void> {
  const state = readState(run) as (SwiftEndpoint & { dir: string }) | null
  if (state) await (await swiftModule()).stopSwift(state.dir)
}

/** global-setup: the run directory the workers share. */
export function makeSwiftRun(root: string): string {
  const run = join(root, 'swift-run')
  mkdirSync(run, { recursive: true })
  return run
}
