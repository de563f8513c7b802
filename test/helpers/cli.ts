/** Runs the `ferry` command (dist/src/cli/main.js) as a child process, as a user would. */
import { spawn, type ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'

export const CLI_JS = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url))

export interface CliRun {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
  readonly stdout: string
  readonly stderr: string
}

export interface RunningCli {
  readonly proc: ChildProcess
  readonly done: Promise<CliRun>
  /** What stderr holds so far. */
  stderr(): string
}

/** Starts `ferry args…` with only PATH, HOME and `env` in its environment. */
export function spawnCli(args: readonly string[], env: Record<string, string>): RunningCli {
  return spawnProgram(process.execPath, [CLI_JS, ...args], env)
}

/** Starts `program args…` with only PATH, HOME and `env` in its environment. */
export function spawnProgram(
  program: string,
  args: readonly string[],
  env: Record<string, string>,
): RunningCli {
  const proc = spawn(program, args, {
    env: { PATH: process.env['PATH'] ?? '', HOME: process.env['HOME'] ?? '/tmp', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let out = ''
  let err = ''
  proc.stdout?.on('data', (d: Buffer) => (out += d.toString()))
  proc.stderr?.on('data', (d: Buffer) => (err += d.toString()))
  const done = new Promise<CliRun>((resolve) => {
    proc.once('close', (code, signal) => resolve({ code, signal, stdout: out, stderr: err }))
  })
  return { proc, done, stderr: () => err }
}

export function runCli(args: readonly string[], env: Record<string, string>): Promise<CliRun> {
  return spawnCli(args, env).done
}

export function runProgram(
  program: string,
  args: readonly string[],
  env: Record<string, string>,
): Promise<CliRun> {
  return spawnProgram(program, args, env).done
}

/** The last line of `text` (the `--json` object), parsed. */
export function lastJson<T = Record<string, unknown>>(text: string): T {
  const lines = text.trim().split('\n')
  return JSON.parse(lines[lines.length - 1]!) as T
}
