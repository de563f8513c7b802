/**
 * Issue 9 item 14: `npm test` on a fresh Debian machine installs the programs its tests start
 * (npm's pretest runs scripts/ensure-tools.mjs), or stops with the one command that does. The
 * script runs here as a real process with PATH set to a directory of our own: programs present
 * are empty executables, and `apt-get` is a shell script that records its arguments (and, for
 * `install`, creates the programs of the packages it was given).
 */
import { describe, expect, test } from '@jest/globals'
import { spawnSync } from 'node:child_process'
import { chmodSync, existsSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { removeDir, tempDir } from '../helpers/server.js'

const SCRIPT = fileURLToPath(new URL('../../../scripts/ensure-tools.mjs', import.meta.url))
const LIST = fileURLToPath(new URL('../../../scripts/test-tools.json', import.meta.url))
const TOOLS = (
  JSON.parse(readFileSync(LIST, 'utf8')) as { tools: { bin: string; package: string }[] }
).tools

function exe(path: string, text = '#!/bin/sh\nexit 0\n'): void {
  writeFileSync(path, text)
  chmodSync(path, 0o755)
}

/** A PATH directory holding `present` and, unless `apt` is null, a recording fake apt-get. */
function fakeMachine(
  present: readonly string[],
  apt: 'works' | 'fails' | null,
): { dir: string; aptLog: string } {
  const dir = tempDir('ferry-tools-')
  chmodSync(dir, 0o755)
  for (const b of present) exe(join(dir, b))
  const aptLog = join(dir, 'apt-get.log')
  if (apt !== null) {
    // Every tool's package maps back to its program name here, so `install` can create it.
    const map = TOOLS.map(
      (t) => `${t.package}) : > "${dir}/${t.bin}"; chmod 755 "${dir}/${t.bin}" ;;`,
    ).join('\n      ')
    exe(
      join(dir, 'apt-get'),
      `#!/bin/sh
PATH=/usr/bin:/bin
echo "$*" >> "${aptLog}"
if [ "$1" = install ]; then
  ${apt === 'fails' ? 'exit 100' : ''}
  for p in "$@"; do
    case "$p" in
      ${map}
    esac
  done
fi
exit 0
`,
    )
  }
  return { dir, aptLog }
}

function runScript(dir: string, opts: { uid?: number } = {}) {
  return spawnSync(process.execPath, [SCRIPT], {
    env: { PATH: dir },
    encoding: 'utf8',
    timeout: 20_000,
    ...(opts.uid !== undefined ? { uid: opts.uid, gid: opts.uid } : {}),
  })
}

const haproxy = TOOLS.find((t) => t.bin === 'haproxy')!
const others = TOOLS.filter((t) => t.bin !== 'haproxy').map((t) => t.bin)

describe('scripts/ensure-tools.mjs (npm pretest)', () => {
  test('the list names what the suite starts: redis-server and haproxy at least', () => {
    expect(TOOLS.map((t) => t.bin)).toEqual(expect.arrayContaining(['redis-server', 'haproxy']))
  })

  test('everything on PATH: exit 0, apt-get is not run', () => {
    const m = fakeMachine(
      TOOLS.map((t) => t.bin),
      'works',
    )
    try {
      const r = runScript(m.dir)
      expect([r.status, r.stderr]).toEqual([0, ''])
      expect(existsSync(m.aptLog)).toBe(false)
    } finally {
      removeDir(m.dir)
    }
  })

  test('haproxy missing, as root: apt-get update, then install of its package; exit 0 once it is there', () => {
    expect(process.getuid?.()).toBe(0) // the suite runs as root on this project's machines
    const m = fakeMachine(others, 'works')
    try {
      const r = runScript(m.dir)
      expect(r.status).toBe(0)
      expect(readFileSync(m.aptLog, 'utf8').trim().split('\n')).toEqual([
        'update -qq',
        `install -y -qq ${haproxy.package}`,
      ])
      expect(existsSync(join(m.dir, 'haproxy'))).toBe(true)
      expect(r.stderr).toContain('installed: haproxy')
    } finally {
      removeDir(m.dir)
    }
  })

  test('the install fails: exit 1 with the command to run', () => {
    const m = fakeMachine(others, 'fails')
    try {
      const r = runScript(m.dir)
      expect(r.status).toBe(1)
      expect(r.stderr).toContain(`apt-get update && apt-get install -y ${haproxy.package}`)
    } finally {
      removeDir(m.dir)
    }
  })

  test('as root without apt-get: exit 1 naming the packages', () => {
    const m = fakeMachine(others, null)
    try {
      const r = runScript(m.dir)
      expect(r.status).toBe(1)
      expect(r.stderr).toContain(`Debian packages: ${haproxy.package}`)
    } finally {
      removeDir(m.dir)
    }
  })

  test('not root (uid 65534): apt-get is not run; exit 1 with the exact command', () => {
    const m = fakeMachine([], 'works')
    try {
      const r = runScript(m.dir, { uid: 65534 })
      expect(r.status).toBe(1)
      const pkgs = [...new Set(TOOLS.map((t) => t.package))].join(' ')
      expect(r.stderr).toContain(`sudo sh -c 'apt-get update && apt-get install -y ${pkgs}'`)
      expect(existsSync(m.aptLog)).toBe(false)
    } finally {
      removeDir(m.dir)
    }
  })
})
