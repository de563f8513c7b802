// Child processes of a bench run: start with a bounded readiness wait, stop with SIGTERM then
// SIGKILL, and kill whatever is left when the driver exits.
import { spawn } from 'node:child_process'
import fs from 'node:fs'
import http from 'node:http'
import net from 'node:net'

const live = new Set()
process.on('exit', () => {
  for (const c of live) {
    try {
      c.kill('SIGKILL')
    } catch {}
  }
})
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(130))

/** Counts `child` among the processes killed when the driver exits. */
export function track(child) {
  live.add(child)
  child.on('exit', () => live.delete(child))
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

export function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer()
    s.on('error', reject)
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address()
      s.close(() => resolve(port))
    })
  })
}

export function httpStatus(port, p) {
  return new Promise((resolve) => {
    const req = http.get(
      { host: '127.0.0.1', port, path: p, agent: false, timeout: 1000 },
      (res) => {
        res.resume()
        resolve(res.statusCode)
      },
    )
    req.on('timeout', () => req.destroy())
    req.on('error', () => resolve(0))
  })
}

export function redisPing(port) {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1')
    s.setTimeout(1000, () => s.destroy())
    s.on('connect', () => s.write('PING\r\n'))
    s.on('data', (d) => {
      s.destroy()
      resolve(d.toString().startsWith('+PONG'))
    })
    s.on('error', () => resolve(false))
    s.on('close', () => resolve(false))
  })
}

function tail(file, n = 20) {
  try {
    return fs.readFileSync(file, 'utf8').trimEnd().split('\n').slice(-n).join('\n')
  } catch {
    return ''
  }
}

/** Spawns a child with output to `logFile`; resolves once `ready()` is true (bounded wait). */
export async function startProcess({ name, cmd, argv, env, cwd, logFile, ready, waitMs = 30_000 }) {
  const log = fs.openSync(logFile, 'a')
  // Never inherit a developer's FERRY_* or REDIS_URL: each server gets exactly what `env` says.
  const base = Object.fromEntries(
    Object.entries(process.env).filter(([k]) => !k.startsWith('FERRY_') && k !== 'REDIS_URL'),
  )
  const child = spawn(cmd, argv, { cwd, env: { ...base, ...env }, stdio: ['ignore', log, log] })
  fs.closeSync(log)
  track(child)
  let exited = null
  child.on('exit', (code, sig) => {
    exited = sig ?? code
  })
  child.on('error', (err) => {
    exited = err.message
  })
  const deadline = Date.now() + waitMs
  while (Date.now() < deadline) {
    if (exited !== null) {
      const err = new Error(
        `${name} exited (${exited}) before it was ready; log ${logFile}:\n${tail(logFile)}`,
      )
      err.bySignal = typeof exited === 'string' && exited.startsWith('SIG')
      throw err
    }
    if (await ready()) return child
    await sleep(50) // polling a port: the child offers no other signal that it is listening
  }
  child.kill('SIGKILL')
  throw new Error(`${name} not ready after ${waitMs} ms; log ${logFile}:\n${tail(logFile)}`)
}

export async function stopProcess(child) {
  if (child.exitCode !== null || child.signalCode !== null) return
  const gone = new Promise((resolve) => child.once('exit', resolve))
  child.kill('SIGTERM')
  let timer
  const late = new Promise((resolve) => {
    timer = setTimeout(resolve, 10_000, false)
  })
  const exited = await Promise.race([gone.then(() => true), late])
  clearTimeout(timer)
  if (exited) return
  child.kill('SIGKILL')
  await gone
}
