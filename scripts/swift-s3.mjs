#!/usr/bin/env node
/**
 * A private, all-in-one OpenStack Swift with its s3api middleware on loopback: the real S3 store
 * the S3 tests and the S3 benchmark run against (issue 15; set-up facts in
 * shared/notes/ecosystem.md §4). Nothing here is a fake: the Debian packages' servers answer.
 *
 *   node scripts/swift-s3.mjs start [--dir D]   starts one, prints its endpoint JSON, returns
 *   node scripts/swift-s3.mjs stop <dir>        stops the one whose runtime directory is <dir>
 *
 * As a module: `startSwift()` answers the endpoint and a `stop()` (the test helper and bench use
 * it). Each start gets its own runtime directory (configs, rings, one device, logs) and free
 * ports for memcached and the proxy, account, container and object servers, each a single
 * process (`workers = 0`) so stopping its pid stops it all. The servers run as the current user,
 * which owns the device directory (Swift answers 503 to every PUT when it cannot write there).
 * start waits for /healthcheck and for an S3 CreateBucket to succeed, so a caller can use it at
 * once. The Debian packages come from scripts/test-tools.json (scripts/ensure-tools.mjs).
 *
 * Credentials are tempauth's test account (`test:tester` / `testing`): a throwaway store on
 * loopback, not a secret.
 */
import { spawn, spawnSync } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import { existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs'
import { writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir, userInfo } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

export const SWIFT_ACCESS_KEY = 'test:tester'
export const SWIFT_SECRET_KEY = 'testing'
export const SWIFT_REGION = 'us-east-1'

const SERVERS = ['account', 'container', 'object']
const STATE = 'swift-s3.json'

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = createServer()
    srv.once('error', reject)
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address()
      srv.close(() => resolve(port))
    })
  })
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms))

function common(dir, port, user) {
  return [
    '[DEFAULT]',
    'bind_ip = 127.0.0.1',
    `bind_port = ${port}`,
    'workers = 0',
    `user = ${user}`,
    `swift_dir = ${dir}`,
    `devices = ${join(dir, 'srv')}`,
    'mount_check = false',
    'log_level = WARNING',
    // No syslog here: Swift's logger would send to /dev/log; a UDP port nobody reads is quiet.
    'log_udp_host = 127.0.0.1',
    'log_udp_port = 9',
    // The test disk may be nearly full on purpose elsewhere; keep Swift's own reserve small.
    'fallocate_reserve = 0',
    '',
  ].join('\n')
}

function storageConf(kind, dir, port, user) {
  return `${common(dir, port, user)}
[pipeline:main]
pipeline = ${kind}-server

[app:${kind}-server]
use = egg:swift#${kind}

[${kind}-replicator]
[${kind}-auditor]
${kind === 'object' ? '' : `[${kind}-reaper]\n`}`
}

function proxyConf(dir, port, user, memcachePort) {
  return `${common(dir, port, user)}
[pipeline:main]
pipeline = catch_errors gatekeeper healthcheck proxy-logging cache listing_formats s3api tempauth copy slo dlo proxy-logging proxy-server

[app:proxy-server]
use = egg:swift#proxy
account_autocreate = true
allow_account_management = true

[filter:tempauth]
use = egg:swift#tempauth
user_test_tester = ${SWIFT_SECRET_KEY} .admin

[filter:s3api]
use = egg:swift#s3api
location = ${SWIFT_REGION}

[filter:cache]
use = egg:swift#memcache
memcache_servers = 127.0.0.1:${memcachePort}

[filter:catch_errors]
use = egg:swift#catch_errors
[filter:gatekeeper]
use = egg:swift#gatekeeper
[filter:healthcheck]
use = egg:swift#healthcheck
[filter:proxy-logging]
use = egg:swift#proxy_logging
[filter:listing_formats]
use = egg:swift#listing_formats
[filter:copy]
use = egg:swift#copy
[filter:slo]
use = egg:swift#slo
[filter:dlo]
use = egg:swift#dlo
`
}

function ringBuilder(dir, args) {
  const r = spawnSync('swift-ring-builder', args, { cwd: dir, encoding: 'utf8' })
  if (r.error) throw new Error(`swift-ring-builder could not run: ${r.error.message}`)
  // rebalance exits 1 for a warning (one device, one replica is unbalanced by design).
  if (r.status !== 0 && r.status !== 1) {
    throw new Error(`swift-ring-builder ${args.join(' ')}: ${r.stdout}${r.stderr}`)
  }
}

/** Kills the process group of each pid (the servers start detached, each its own group). */
function killAll(pids, signal) {
  for (const pid of pids) {
    try {
      process.kill(-pid, signal)
    } catch {
      /* gone already */
    }
  }
}

const alive = (pid) => {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

async function stopPids(pids) {
  killAll(pids, 'SIGTERM')
  const until = Date.now() + 10_000
  while (Date.now() < until && pids.some(alive)) await sleep(50)
  killAll(
    pids.filter((p) => alive(p)),
    'SIGKILL',
  )
  while (pids.some(alive)) await sleep(20)
}

function tail(path) {
  try {
    return readFileSync(path, 'utf8').split('\n').slice(-15).join('\n')
  } catch {
    return ''
  }
}

async function healthy(endpoint) {
  try {
    const res = await fetch(`${endpoint}/healthcheck`, { signal: AbortSignal.timeout(2000) })
    return res.status === 200
  } catch {
    return false
  }
}

/** A client of the started store (path-style, the test account). */
export async function swiftClient(endpoint) {
  const { S3Client } = await import('@aws-sdk/client-s3')
  return new S3Client({
    endpoint,
    region: SWIFT_REGION,
    forcePathStyle: true,
    credentials: { accessKeyId: SWIFT_ACCESS_KEY, secretAccessKey: SWIFT_SECRET_KEY },
  })
}

/** Creates `bucket` (a 409 for one we own already is fine). */
export async function createBucket(endpoint, bucket) {
  const { CreateBucketCommand } = await import('@aws-sdk/client-s3')
  const s3 = await swiftClient(endpoint)
  try {
    await s3.send(new CreateBucketCommand({ Bucket: bucket }))
  } catch (err) {
    if (err?.name !== 'BucketAlreadyOwnedByYou') throw err
  } finally {
    s3.destroy()
  }
}

/**
 * Starts a private Swift. Options: `dir` (runtime directory, default a new temp one), `detached`
 * (leave the servers running after this process exits: the CLI's `start`), `timeoutMs`.
 * Answers { endpoint, region, accessKeyId, secretAccessKey, dir, pids, startMs, stop() }.
 */
export async function startSwift(opts = {}) {
  const t0 = Date.now()
  const dir = opts.dir ?? mkdtempSync(join(tmpdir(), 'ferry-swift-'))
  mkdirSync(join(dir, 'srv', 'd1'), { recursive: true })
  const user = userInfo().username
  const ports = {
    memcached: await freePort(),
    proxy: await freePort(),
    account: await freePort(),
    container: await freePort(),
    object: await freePort(),
  }
  const hash = randomUUID()
  writeFileSync(
    join(dir, 'swift.conf'),
    `[swift-hash]\nswift_hash_path_suffix = ${hash}\nswift_hash_path_prefix = ${hash}\n\n` +
      '[storage-policy:0]\nname = Policy-0\ndefault = yes\n\n[swift-constraints]\n',
  )
  for (const kind of SERVERS) {
    writeFileSync(join(dir, `${kind}-server.conf`), storageConf(kind, dir, ports[kind], user))
    ringBuilder(dir, [`${kind}.builder`, 'create', '6', '1', '1'])
    ringBuilder(dir, [`${kind}.builder`, 'add', `r1z1-127.0.0.1:${ports[kind]}/d1`, '100'])
    ringBuilder(dir, [`${kind}.builder`, 'rebalance'])
    if (!existsSync(join(dir, `${kind}.ring.gz`))) {
      throw new Error(`swift-ring-builder made no ${kind}.ring.gz in ${dir}`)
    }
  }
  writeFileSync(join(dir, 'proxy-server.conf'), proxyConf(dir, ports.proxy, user, ports.memcached))

  const pids = []
  const logs = []
  const launch = (name, cmd, args) => {
    const log = join(dir, `${name}.log`)
    logs.push(log)
    const fd = openSync(log, 'a')
    const child = spawn(cmd, args, { cwd: dir, detached: true, stdio: ['ignore', fd, fd] })
    child.on('error', () => {})
    if (opts.detached) child.unref()
    pids.push(child.pid)
    return child
  }
  const stop = async () => {
    await stopPids(pids)
    if (!opts.keep) rmSync(dir, { recursive: true, force: true })
  }
  try {
    const mc = ['-l', '127.0.0.1', '-p', String(ports.memcached), '-U', '0', '-m', '64']
    if (process.getuid?.() === 0) mc.push('-u', user)
    const children = [launch('memcached', 'memcached', mc)]
    for (const kind of SERVERS) {
      const conf = join(dir, `${kind}-server.conf`)
      children.push(launch(kind, `swift-${kind}-server`, [conf]))
    }
    children.push(launch('proxy', 'swift-proxy-server', [join(dir, 'proxy-server.conf')]))
    const endpoint = `http://127.0.0.1:${ports.proxy}`
    const until = Date.now() + (opts.timeoutMs ?? 120_000)
    let lastErr = null
    for (;;) {
      const dead = children.find((c) => c.exitCode !== null || c.signalCode !== null)
      if (dead) {
        const log = logs[children.indexOf(dead)]
        throw new Error(
          `${dead.spawnargs[0]} exited (${dead.exitCode ?? dead.signalCode}):\n${tail(log)}`,
        )
      }
      if (await healthy(endpoint)) {
        try {
          // A bucket round trip proves memcached, tempauth, s3api and all three rings work.
          await createBucket(endpoint, 'ferry-swift-ready')
          break
        } catch (err) {
          lastErr = err
        }
      }
      if (Date.now() > until) {
        const why = lastErr ? `: ${lastErr.name} ${lastErr.message}` : ''
        throw new Error(
          `Swift in ${dir} did not answer S3 in time${why}\n${logs.map(tail).join('\n')}`,
        )
      }
      await sleep(200)
    }
    const info = {
      endpoint,
      region: SWIFT_REGION,
      accessKeyId: SWIFT_ACCESS_KEY,
      secretAccessKey: SWIFT_SECRET_KEY,
      dir,
      pids,
      startMs: Date.now() - t0,
    }
    writeFileSync(join(dir, STATE), `${JSON.stringify(info)}\n`)
    return { ...info, stop }
  } catch (err) {
    await stop().catch(() => {})
    throw err
  }
}

/** Stops the Swift whose runtime directory is `dir` (started by the CLI) and removes `dir`. */
export async function stopSwift(dir) {
  const { pids } = JSON.parse(readFileSync(join(dir, STATE), 'utf8'))
  await stopPids(pids)
  rmSync(dir, { recursive: true, force: true })
}

async function main(argv) {
  const [cmd, ...rest] = argv
  if (cmd === 'start') {
    const i = rest.indexOf('--dir')
    const dir = i >= 0 ? rest[i + 1] : undefined
    if (dir) mkdirSync(dir, { recursive: true })
    const { stop: _stop, ...info } = await startSwift({ dir, detached: true, keep: true })
    process.stdout.write(`${JSON.stringify(info, null, 2)}\n`)
    return 0
  }
  if (cmd === 'stop' && rest[0]) {
    await stopSwift(rest[0])
    return 0
  }
  process.stderr.write('usage: swift-s3.mjs start [--dir D] | stop <dir>\n')
  return 2
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (err) => {
      process.stderr.write(`swift-s3: ${err.stack ?? err}\n`)
      process.exit(1)
    },
  )
}
