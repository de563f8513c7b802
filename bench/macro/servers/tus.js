// The peer: @tus/server with @tus/file-store, as most Node users would deploy it. /healthz is
// answered here (tus has none) so the harness waits for readiness the same way for every server.
import http from 'node:http'
import path from 'node:path'
import { FileStore } from '@tus/file-store'
import { Server } from '@tus/server'

const host = process.env.BENCH_HOST ?? '127.0.0.1'
const port = Number(process.env.BENCH_PORT)
const dir = process.env.BENCH_DATA_DIR

const tus = new Server({
  path: '/files',
  datastore: new FileStore({ directory: path.join(dir, 'tus') }),
})
const server = http.createServer((req, res) => {
  if (req.url === '/healthz') return res.end('ok')
  return tus.handle(req, res)
})
server.keepAliveTimeout = 60_000
server.listen(port, host, () => console.log(`tus listening on http://${host}:${port}`))
process.on('SIGTERM', () => server.close(() => process.exit(0)))
