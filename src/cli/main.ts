#!/usr/bin/env node
/**
 * `ferry`: the server (`ferry serve`) and Ferry's uploader (`ferry upload FILE… --to URL`).
 * Expected failures end in one line on stderr and a non-zero exit code: 2 for a wrong command
 * line or a missing file, 1 for a failed upload, 130 after Ctrl-C (run the same command again
 * to resume).
 */
import { Command, CommanderError, Option } from 'commander'
import { CliError } from './errors.js'
import { count, parseSize } from './options.js'
import { runServer } from './serve.js'
import { runUpload, type Protocol } from './upload.js'

interface UploadFlags {
  to: string
  protocol: Protocol
  path?: string
  chunkSize?: number
  parallel?: number
  retries: number
  retryDelay: number
  jobs: number
  json: boolean
}

function program(): Command {
  const p = new Command('ferry')
    .description('Ferry: a chunked, resumable upload server, and its uploader')
    .showSuggestionAfterError()
    .exitOverride()
    .configureOutput({ outputError: (s, write) => write(s) })

  p.command('serve')
    .description('start the server (what `npm start` runs; configured by FERRY_* variables)')
    .option('--host <host>', 'address to listen on (FERRY_HOST)')
    .option('--port <port>', 'port to listen on (FERRY_PORT)')
    .option('--data-dir <dir>', 'data directory (FERRY_DATA_DIR)')
    .option('--redis-url <url>', 'Redis for a cluster of instances (REDIS_URL)')
    .option('--workers <n>', 'hashing worker threads (FERRY_WORKERS)')
    .action((o: Record<string, string | undefined>) => {
      const argv: string[] = []
      for (const [flag, key] of [
        ['--host', 'host'],
        ['--port', 'port'],
        ['--data-dir', 'dataDir'],
        ['--redis-url', 'redisUrl'],
        ['--workers', 'workers'],
      ] as const) {
        if (o[key] !== undefined) argv.push(flag, o[key])
      }
      runServer(argv)
    })

  p.command('upload')
    .description('upload files or directories to a Ferry server, resumably')
    .argument('<file...>', 'files, or directories to upload with all the files below them')
    .requiredOption(
      '--to <url>',
      "Ferry's base URL, e.g. http://localhost:8080 (or a full tus endpoint URL)",
    )
    .addOption(
      new Option('--protocol <name>', 'upload protocol')
        .choices(['tus', 'imagestore'])
        .default('tus'),
    )
    .option('--path <path>', 'imagestore: store path of the file (a folder when uploading several)')
    .option(
      '--chunk-size <size>',
      'bytes per request, e.g. 8M (imagestore default 8M; tus: the whole rest in one PATCH)',
      parseSize,
    )
    .option(
      '--parallel <n>',
      'requests at once per file (tus: parallelUploads; default: imagestore 4, tus 1)',
      count(1, 64),
    )
    .option(
      '--retries <n>',
      'retries of a failed request, with exponential backoff',
      count(0, 1000),
      8,
    )
    .option(
      '--retry-delay <ms>',
      'first backoff delay in milliseconds (doubles each retry)',
      count(0, 600_000),
      500,
    )
    .option('--jobs <n>', 'files uploaded at the same time', count(1, 64), 2)
    .option(
      '--json',
      'print one JSON line per uploaded file: {"url","bytes","sha256","resumedFrom"}',
      false,
    )
    .action(async (files: string[], o: UploadFlags) => {
      const ac = new AbortController()
      const interrupt = () => {
        if (ac.signal.aborted) process.exit(130)
        ac.abort(new CliError('interrupted; run the same command again to resume', 130))
      }
      process.on('SIGINT', interrupt)
      process.on('SIGTERM', interrupt)
      const code = await runUpload(
        {
          inputs: files,
          to: o.to,
          protocol: o.protocol,
          path: o.path,
          chunkSize: o.chunkSize ?? 0,
          parallel: o.parallel ?? (o.protocol === 'imagestore' ? 4 : 1),
          retries: o.retries,
          retryDelayMs: o.retryDelay,
          jobs: o.jobs,
          json: o.json,
        },
        { stdout: process.stdout, stderr: process.stderr, env: process.env, signal: ac.signal },
      )
      process.exitCode = code
    })
  return p
}

program()
  .parseAsync(process.argv)
  .catch((err: unknown) => {
    if (err instanceof CommanderError) {
      // Help and --version end here too, with code 0; commander already printed its message.
      process.exitCode = err.exitCode === 0 ? 0 : 2
      return
    }
    if (err instanceof CliError) {
      process.stderr.write(`ferry: ${err.message}\n`)
      process.exitCode = err.exitCode
      return
    }
    process.stderr.write(`ferry: unexpected failure: ${(err as Error).stack ?? String(err)}\n`)
    process.exitCode = 1
  })
