#!/usr/bin/env node
/**
 * npm's `pretest`: makes sure every program the test suite starts is on PATH (issue 9 item 14: a
 * fresh machine failed `npm test` with `spawn haproxy ENOENT`). The list is
 * scripts/test-tools.json.
 *
 * For each missing program: as root, `apt-get update -qq` then `apt-get install -y -qq <packages>`
 * (Debian, the machines this project runs on); not as root, or without apt-get, it stops with the
 * one command that installs them. It never skips: a test that needs a program gets it or the run
 * stops here, before the build, saying what to do.
 *
 * Exit codes: 0 all present (or installed), 1 missing and not installable here.
 */
import { spawnSync } from 'node:child_process'
import { accessSync, constants, readFileSync } from 'node:fs'
import { delimiter, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const LIST = fileURLToPath(new URL('./test-tools.json', import.meta.url))

/** The full path of `bin` on PATH, or null. */
function which(bin) {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (dir === '') continue
    const p = join(dir, bin)
    try {
      accessSync(p, constants.X_OK)
      return p
    } catch {
      /* not here */
    }
  }
  return null
}

function say(line) {
  process.stderr.write(`ensure-tools: ${line}\n`)
}

function run(cmd, args) {
  say(`${cmd} ${args.join(' ')}`)
  const r = spawnSync(cmd, args, {
    stdio: ['ignore', 'inherit', 'inherit'],
    env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
  })
  if (r.error) return `${cmd} could not run: ${r.error.message}`
  return r.status === 0 ? null : `${cmd} ${args[0]} exited with ${r.status ?? r.signal}`
}

const { tools } = JSON.parse(readFileSync(LIST, 'utf8'))
const missing = tools.filter((t) => which(t.bin) === null)
if (missing.length === 0) process.exit(0)

const packages = [...new Set(missing.map((t) => t.package))]
const names = missing.map((t) => t.bin).join(', ')
const command = `apt-get update && apt-get install -y ${packages.join(' ')}`
const isRoot = typeof process.getuid === 'function' && process.getuid() === 0

if (!isRoot) {
  say(`the test suite needs ${names}, which ${missing.length === 1 ? 'is' : 'are'} not on PATH.`)
  say(`install as root, then run the tests again:\n\n    sudo sh -c '${command}'\n`)
  process.exit(1)
}
if (which('apt-get') === null) {
  say(
    `the test suite needs ${names} (Debian packages: ${packages.join(' ')}), and there is no apt-get here to install them.`,
  )
  say("install them with this system's package manager, then run the tests again.")
  process.exit(1)
}
say(`installing what the test suite needs: ${names}`)
const failed =
  run('apt-get', ['update', '-qq']) ?? run('apt-get', ['install', '-y', '-qq', ...packages])
const still = missing.filter((t) => which(t.bin) === null)
if (failed !== null || still.length > 0) {
  say(
    `could not install ${still.map((t) => t.bin).join(', ') || names}${failed ? ` (${failed})` : ''}.`,
  )
  say(`run this as root, then the tests again:\n\n    ${command}\n`)
  process.exit(1)
}
say(`installed: ${names}`)
