#!/usr/bin/env node
// Ferry on S3 against the store's own ceiling (issue 15): a scenario-b-like chunked upload to
// Ferry started with FERRY_STORAGE=s3, and a plain @aws-sdk/lib-storage Upload of the same bytes
// to the same Swift, interleaved, on a private all-in-one OpenStack Swift (scripts/swift-s3.mjs).
//
//   node bench/s3.js [--mib 1024] [--reps 3] [--chunk-mib 8] [--parallel 4]
//                    [--ferry-main dist/src/main.js] [--json out.json]
//
// Ferry: a session of --chunk-mib chunks (Content-Range), --parallel in flight, then
// CommitUploadSession; timed from the first chunk to the commit's answer (the object is in the
// bucket then). lib-storage: one Upload of the same buffer, partSize --chunk-mib, queueSize
// --parallel; timed from start to done(). Per repetition both run once, the order alternating;
// each object is read back from the bucket and its sha256 checked (not timed), then deleted.
// Prints MB/s (10^6 B) per run, medians and Ferry ÷ lib-storage.
import { spawn } from 'node:child_process'
import { createHash, randomUUID } from 'node:crypto'
import fs from 'node:fs'
import http from 'node:http'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import {
  CreateBucketCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  ListObjectsV2Command,
  S3Client,
} from '@aws-sdk/client-s3'
import { Upload } from '@aws-sdk/lib-storage'
import { makeData, sha256hex } from './macro/data.js'
import { freePort, httpStatus, sleep } from './macro/procs.js'

const benchDir = path.dirname(fileURLToPath(import.meta.url))
const rootDir = path.resolve(benchDir, '..')
const MiB = 1024 * 1024

const { values: args } = parseArgs({
  options: {
    mib: { type: 'string', default: '1024' },
    reps: { type: 'string', default: '3' },
    'chunk-mib': { type: 'string', default: '8' },
    parallel: { type: 'string', default: '4' },
    'ferry-main': { type: 'string', default: path.join(rootDir, 'dist', 'src', 'main.js') },
    json: { type: 'string' },
    help: { type: 'boolean', default: false },
  },
})
if (args.help) {
  console.log(fs.readFileSync(fileURLToPath(import.meta.url), 'utf8').split('\nimport ')[0])
  process.exit(0)
}
const size = Number(args.mib) * MiB
const reps = Number(args.reps)
const chunk = Number(args['chunk-mib']) * MiB
const parallel = Number(args.parallel)
for (const [k, v] of Object.entries({ size, reps, chunk, parallel })) {
  if (!Number.isSafeInteger(v) || v < 1) throw new Error(`--${k}: a positive whole number`)
}
if (chunk < 5 * MiB) throw new Error('--chunk-mib: at least 5 (S3 parts but the last are ≥ 5 MiB)')

const { startSwift } = await import(path.join(rootDir, 'scripts', 'swift-s3.mjs'))

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-bench-s3-'))
let swift = null
let ferry = null
async function cleanup() {
  if (ferry && ferry.exitCode === null && ferry.signalCode === null) {
    const gone = new Promise((r) => ferry.once('exit', r))
    ferry.kill('SIGTERM')
    await Promise.race([gone, sleep(10_000)])
    if (ferry.exitCode === null && ferry.signalCode === null) ferry.kill('SIGKILL')
  }
  if (swift) await swift.stop()
  fs.rmSync(work, { recursive: true, force: true })
}
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => {
    cleanup().finally(() => process.exit(130))
  })
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b)
  const m = Math.floor(s.length / 2)
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2
}

/** One HTTP request to Ferry; resolves with the status, rejects on another than `ok`. */
function request(agent, port, method, p, headers, body, ok) {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: '127.0.0.1', port, method, path: p, agent, headers: { ...headers } },
      (res) => {
        const parts = []
        res.on('data', (c) => parts.push(c))
        res.on('end', () => {
          if (ok.includes(res.statusCode)) resolve(res.statusCode)
          else {
            const text = Buffer.concat(parts).toString().slice(0, 500)
            reject(new Error(`${method} ${p}: ${res.statusCode} ${text}`))
          }
        })
      },
    )
    req.on('error', reject)
    req.end(body ?? undefined)
  })
}

async function sha256Of(client, bucket, key) {
  const r = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key }))
  const h = createHash('sha256')
  let n = 0
  for await (const c of r.Body) {
    h.update(c)
    n += c.length
  }
  return { sha: h.digest('hex'), size: n }
}

async function keysUnder(client, bucket, prefix) {
  const keys = []
  let token
  do {
    const r = await client.send(
      new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }),
    )
    for (const o of r.Contents ?? []) keys.push(o.Key)
    token = r.IsTruncated ? r.NextContinuationToken : undefined
  } while (token)
  return keys
}

const ISQ = 'api-version=6.0'

async function main() {
  console.log(
    `bench/s3.js: ${args.mib} MiB, ${args['chunk-mib']} MiB chunks/parts, ${parallel} in flight, ${reps} reps`,
  )
  const data = makeData('s3', 'big', size)
  const want = sha256hex(data)
  const t0 = Date.now()
  swift = await startSwift()
  console.log(`swift ready in ${((Date.now() - t0) / 1000).toFixed(1)} s at ${swift.endpoint}`)
  const bucket = `bench-${randomUUID().slice(0, 8)}`
  const client = new S3Client({
    endpoint: swift.endpoint,
    region: swift.region,
    forcePathStyle: true,
    credentials: { accessKeyId: swift.accessKeyId, secretAccessKey: swift.secretAccessKey },
  })
  await client.send(new CreateBucketCommand({ Bucket: bucket }))

  const port = await freePort()
  const dataDir = path.join(work, 'ferry')
  fs.mkdirSync(dataDir)
  const logFile = path.join(work, 'ferry.log')
  const log = fs.openSync(logFile, 'a')
  const base = Object.fromEntries(
    Object.entries(process.env).filter(([k]) => !k.startsWith('FERRY_') && k !== 'REDIS_URL'),
  )
  ferry = spawn(process.execPath, [args['ferry-main']], {
    env: {
      ...base,
      FERRY_HOST: '127.0.0.1',
      FERRY_PORT: String(port),
      FERRY_DATA_DIR: dataDir,
      FERRY_MAX_UPLOAD_BYTES: String(Math.max(size, 64 * MiB)),
      FERRY_FAMILIES: 'imagestore',
      FERRY_STORAGE: 's3',
      FERRY_S3_ENDPOINT: swift.endpoint,
      FERRY_S3_REGION: swift.region,
      FERRY_S3_BUCKET: bucket,
      FERRY_S3_PREFIX: 'ferry/',
      FERRY_S3_FORCE_PATH_STYLE: 'true',
      // The SDK's default credential chain: the environment.
      AWS_ACCESS_KEY_ID: swift.accessKeyId,
      AWS_SECRET_ACCESS_KEY: swift.secretAccessKey,
    },
    stdio: ['ignore', log, log],
  })
  fs.closeSync(log)
  const deadline = Date.now() + 60_000
  while ((await httpStatus(port, '/healthz')) !== 200) {
    if (ferry.exitCode !== null || Date.now() > deadline) {
      throw new Error(`ferry did not start; log:\n${fs.readFileSync(logFile, 'utf8').slice(-3000)}`)
    }
    await sleep(100)
  }

  const agent = new http.Agent({ keepAlive: true, maxSockets: parallel })
  const count = Math.ceil(size / chunk)

  async function runFerry(rep) {
    const name = `s3bench/chunked-${rep}.bin`
    const sid = randomUUID()
    const start = process.hrtime.bigint()
    let next = 0
    const worker = async () => {
      while (next < count) {
        const i = next++
        const a = i * chunk
        const b = Math.min(size, a + chunk) - 1
        const p = `/ImageStore/${name}/$/UploadChunk?${ISQ}&session-id=${sid}`
        const headers = { 'content-range': `bytes ${a}-${b}/${size}` }
        await request(agent, port, 'PUT', p, headers, data.subarray(a, b + 1), [200])
      }
    }
    await Promise.all(Array.from({ length: Math.min(parallel, count) }, worker))
    const c0 = process.hrtime.bigint()
    const commit = `/ImageStore/$/CommitUploadSession?${ISQ}&session-id=${sid}`
    await request(agent, port, 'POST', commit, {}, null, [200])
    const end = process.hrtime.bigint()
    const keys = (await keysUnder(client, bucket, 'ferry/')).filter((k) => k.endsWith(name))
    if (keys.length !== 1) throw new Error(`ferry: ${keys.length} objects named ${name}`)
    const got = await sha256Of(client, bucket, keys[0])
    if (got.size !== size || got.sha !== want) throw new Error(`ferry: ${keys[0]} is not the data`)
    await client.send(new DeleteObjectCommand({ Bucket: bucket, Key: keys[0] }))
    return { elapsedNs: Number(end - start), commitNs: Number(end - c0) }
  }

  async function runPlain(rep) {
    const key = `plain/upload-${rep}.bin`
    const start = process.hrtime.bigint()
    const up = new Upload({
      client,
      params: { Bucket: bucket, Key: key, Body: data },
      partSize: chunk,
      queueSize: parallel,
      leavePartsOnError: false,
    })
    await up.done()
    const end = process.hrtime.bigint()
    const got = await sha256Of(client, bucket, key)
    if (got.size !== size || got.sha !== want)
      throw new Error(`lib-storage: ${key} is not the data`)
    await client.send(new DeleteObjectCommand({ Bucket: bucket, Key: key }))
    return { elapsedNs: Number(end - start), commitNs: 0 }
  }

  const runs = { ferry: [], plain: [] }
  const mbps = (r) => size / 1e6 / (r.elapsedNs / 1e9)
  for (let rep = 0; rep < reps; rep++) {
    const order = rep % 2 === 0 ? ['ferry', 'plain'] : ['plain', 'ferry']
    for (const who of order) {
      const r = who === 'ferry' ? await runFerry(rep) : await runPlain(rep)
      runs[who].push(r)
      const commit = who === 'ferry' ? `, commit ${(r.commitNs / 1e6).toFixed(0)} ms` : ''
      console.log(
        `rep ${rep + 1} ${who === 'ferry' ? 'ferry (FERRY_STORAGE=s3)' : 'lib-storage Upload'}: ` +
          `${mbps(r).toFixed(1)} MB/s (${(r.elapsedNs / 1e9).toFixed(2)} s${commit})`,
      )
    }
  }
  const fm = median(runs.ferry.map(mbps))
  const pm = median(runs.plain.map(mbps))
  const cm = median(runs.ferry.map((r) => r.commitNs / 1e6))
  console.log(
    `median ferry ${fm.toFixed(1)} MB/s (commit ${cm.toFixed(0)} ms), lib-storage ${pm.toFixed(1)} MB/s`,
  )
  console.log(`ferry ÷ lib-storage: ${(fm / pm).toFixed(2)}`)
  if (args.json) {
    const out = {
      mib: Number(args.mib),
      chunkMib: Number(args['chunk-mib']),
      parallel,
      reps,
      ferryMBps: runs.ferry.map(mbps),
      ferryCommitMs: runs.ferry.map((r) => r.commitNs / 1e6),
      libStorageMBps: runs.plain.map(mbps),
      ratio: fm / pm,
    }
    fs.writeFileSync(args.json, `${JSON.stringify(out, null, 2)}\n`)
  }
  agent.destroy()
}

try {
  await main()
} catch (err) {
  console.error(err)
  process.exitCode = 1
} finally {
  await cleanup()
}
