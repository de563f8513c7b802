/**
 * One process per embedded data directory (issue 17.6): processes started at the same instant
 * beside a stale pid file never both own it; a pid file naming a live but unrelated process does
 * not block a start; a SIGKILLed owner's lock is gone with it.
 */
import { afterAll, describe, expect, test } from '@jest/globals'
import { spawn } from 'node:child_process'
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { removeDir, spawnFerry, tempDir } from '../helpers/server.js'

const EMBEDDED_JS = new URL('../../src/core/state/embedded.js', import.meta.url).href
const dirs: string[] = []
afterAll(() => dirs.forEach(removeDir))

function newDir(): string {
  const d = tempDir('ferry-dirlock-')
  dirs.push(d)
  return d
}

const TRIALS = 50

/**
 * One contender: for trial k it waits for the wall-clock instant `at + k * 20 ms` (so that both
 * contenders claim at once), claims directory `d<k>`, and keeps what it won until the test ends
 * its stdin, after both contenders have printed: a contender descheduled for a while on a loaded
 * machine still finds the other's directories held (a CI run once saw both win the last trials
 * because the first had already finished and let go). Prints one letter per trial (W won, L lost)
 * and a newline.
 */
const CONTENDER = `
import { createEmbeddedState } from ${JSON.stringify(EMBEDDED_JS)}
import { join } from 'node:path'
const [work, at] = process.argv.slice(2)
const held = []
let out = ''
for (let k = 0; k < ${TRIALS}; k++) {
  const when = Number(at) + k * 20
  while (Date.now() < when) {}
  try {
    held.push(createEmbeddedState(join(work, 'd' + k)))
    out += 'W'
  } catch (err) {
    if (!/in use by/.test(String(err))) throw err
    out += 'L'
  }
}
process.stdout.write(out + '\\n')
process.stdin.resume()
await new Promise((resolve) => process.stdin.on('end', resolve))
for (const s of held) await s.close()
`

interface Contender {
  /** The letters, once the contender has printed its line. */
  readonly result: Promise<string>
  /** Lets it release what it holds and exit. */
  finish(): Promise<void>
}

function contend(script: string, work: string, at: number): Contender {
  const p = spawn(process.execPath, [script, work, String(at)], { stdio: ['pipe', 'pipe', 'pipe'] })
  let out = ''
  const exited = new Promise<void>((resolve) => p.on('exit', () => resolve()))
  const result = new Promise<string>((resolve, reject) => {
    const done = () => resolve(out.trim())
    p.stdout.on('data', (d: Buffer) => {
      out += d.toString()
      if (out.includes('\n')) done()
    })
    p.stderr.on('data', (d: Buffer) => (out += d.toString()))
    p.on('error', reject)
    void exited.then(done)
  })
  return {
    result,
    finish: async () => {
      p.stdin.end()
      await exited
    },
  }
}

describe('the data-directory lock', () => {
  test('two processes starting together beside a stale pid file: exactly one owns the directory, every time', async () => {
    const work = newDir()
    const script = join(work, 'contend.mjs')
    writeFileSync(script, CONTENDER)
    for (let k = 0; k < TRIALS; k++) {
      mkdirSync(join(work, `d${k}`))
      writeFileSync(join(work, `d${k}`, 'owner.pid'), '999999') // a process long gone
    }
    // Far enough ahead that both are loaded and spinning when the first instant comes.
    const at = Date.now() + 1500
    const contenders = [contend(script, work, at), contend(script, work, at)]
    const [a = '', b = ''] = await Promise.all(contenders.map((c) => c.result))
    await Promise.all(contenders.map((c) => c.finish()))
    expect(a).toMatch(new RegExp(`^[WL]{${TRIALS}}$`))
    expect(b).toMatch(new RegExp(`^[WL]{${TRIALS}}$`))
    const owners = Array.from(
      { length: TRIALS },
      (_, k) => `${a[k]}${b[k]}`.replace(/L/g, '').length,
    )
    expect(owners).toEqual(Array.from({ length: TRIALS }, () => 1))
  })

  test('a pid file naming a live, unrelated process does not block the start', async () => {
    const dir = newDir()
    mkdirSync(join(dir, 'state'))
    // This test runner: alive, and not a Ferry.
    writeFileSync(join(dir, 'state/owner.pid'), String(process.pid))
    const child = await spawnFerry({ FERRY_DATA_DIR: dir })
    child.proc.kill('SIGTERM')
    expect(await child.exited).toBe(0)
  })

  test('the lock of an owner killed with SIGKILL is released: the next start succeeds', async () => {
    const dir = newDir()
    const first = await spawnFerry({ FERRY_DATA_DIR: dir })
    first.proc.kill('SIGKILL')
    expect(await first.exited).toBe('SIGKILL')
    const second = await spawnFerry({ FERRY_DATA_DIR: dir })
    second.proc.kill('SIGTERM')
    expect(await second.exited).toBe(0)
  })
})
