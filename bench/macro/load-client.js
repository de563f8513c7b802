// The driver's side of the load generator (macro/load.js) and of the disk process
// (macro/disk.js): fork it, then one IPC round trip per command, each bounded by a timeout.
import { fork } from 'node:child_process'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { track } from './procs.js'

const macroDir = path.dirname(fileURLToPath(import.meta.url))

export const startLoad = () => startIpcChild('load.js')

/** Forks `macro/<script>` with `env` added; returns {ask, close, pid}. */
export function startIpcChild(script, env = {}, stdio = ['ignore', 'inherit', 'inherit', 'ipc']) {
  const load = fork(path.join(macroDir, script), [], {
    stdio,
    env: { ...process.env, ...env },
  })
  track(load)
  let loadExit = null
  load.on('exit', (code) => {
    loadExit = code
  })

  /** One IPC round trip to the load generator, bounded by `ms`. */
  function ask(msg, ms) {
    return new Promise((resolve, reject) => {
      if (loadExit !== null) return reject(new Error(`load generator exited (${loadExit})`))
      const timer = setTimeout(() => {
        cleanup()
        reject(new Error(`load generator: no answer in ${ms} ms`))
      }, ms)
      const onMsg = (m) => {
        cleanup()
        m.ok ? resolve(m) : reject(new Error(m.error))
      }
      const onExit = (code) => {
        cleanup()
        reject(new Error(`load generator exited (${code})`))
      }
      const cleanup = () => {
        clearTimeout(timer)
        load.off('message', onMsg)
        load.off('exit', onExit)
      }
      load.on('message', onMsg)
      load.on('exit', onExit)
      load.send(msg)
    })
  }
  const exited = new Promise((resolve) => load.once('exit', resolve))
  return {
    ask,
    pid: load.pid,
    close: async () => {
      await ask({ cmd: 'exit' }, 5000).catch(() => {})
      if (loadExit === null) await exited
    },
  }
}
