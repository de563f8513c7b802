/**
 * What the default journal mode promises about a process crash: a change acknowledged before the
 * process was killed (SIGKILL, no chance to flush anything) is there after a restart, in both
 * modes. (Power loss is the other half; its ordering of fdatasyncs is checked under strace in
 * embedded-journal-fsync.test.ts.)
 */
import { afterAll, expect, test } from '@jest/globals'
import { spawn } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { createEmbeddedState } from '../../src/core/state/embedded.js'
import { removeDir, tempDir } from '../helpers/server.js'

const EMBEDDED_JS = new URL('../../src/core/state/embedded.js', import.meta.url).href
const dirs: string[] = []
afterAll(() => dirs.forEach(removeDir))

/** Opens sessions, 8 in flight, for ever; prints each acknowledged index. */
const WRITER = `
import { createEmbeddedState } from ${JSON.stringify(EMBEDDED_JS)}
const [dir, mode] = process.argv.slice(2)
const s = createEmbeddedState(dir, { journalMode: mode }).sessions
let next = 0
const one = async () => {
  for (;;) {
    const i = next++
    await s.open({ key: 'k:' + i, incarnation: 'i' + i, target: 't', totalBytes: 1, tempName: 'x' }, 0)
    process.stdout.write(i + '\\n')
  }
}
for (let w = 0; w < 8; w++) void one()
`

test.each(['background', 'sync'] as const)(
  '%s mode: every change acknowledged before a SIGKILL is there after the restart',
  async (mode) => {
    const dir = tempDir('ferry-journal-kill-')
    dirs.push(dir)
    const script = join(dir, 'writer.mjs')
    writeFileSync(script, WRITER)
    const acked: number[] = []
    const proc = spawn(process.execPath, [script, join(dir, 'state'), mode], {
      stdio: ['ignore', 'pipe', 'inherit'],
    })
    let buf = ''
    await new Promise<void>((resolve) => {
      proc.stdout.on('data', (d: Buffer) => {
        buf += d.toString()
        const lines = buf.split('\n')
        buf = lines.pop()!
        for (const l of lines) acked.push(Number(l))
        if (acked.length >= 400) {
          proc.kill('SIGKILL')
          resolve()
        }
      })
    })
    await new Promise((r) => proc.once('exit', r))
    const state = createEmbeddedState(join(dir, 'state'))
    const missing: number[] = []
    for (const i of acked) if ((await state.sessions.get(`k:${i}`)) === null) missing.push(i)
    await state.close()
    expect(missing).toEqual([])
    expect(acked.length).toBeGreaterThanOrEqual(400)
  },
)
