import { afterEach, describe, expect, test } from '@jest/globals'
import {
  createServer,
  request,
  type IncomingHttpHeaders,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http'
import { connect, type AddressInfo } from 'node:net'
import { formatUploadLimit } from '../../src/http/tus/headers.js'
import {
  sendUploadResumptionSupported,
  type ResumptionSupported,
} from '../../src/http/tus/informational.js'

interface Info {
  status: number
  message: string
  headers: IncomingHttpHeaders
}

let server: Server | undefined

afterEach(async () => {
  if (server) {
    server.closeAllConnections()
    await new Promise<void>((resolve) => server!.close(() => resolve()))
    server = undefined
  }
})

type Handler = (req: IncomingMessage, res: ServerResponse) => void

async function listen(handler: Handler): Promise<number> {
  server = createServer(handler)
  await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', resolve))
  return (server.address() as AddressInfo).port
}

/** A POST through node's client: every 1xx seen by 'information', then the final answer. */
function post(port: number, body: Buffer, headers: Record<string, string> = {}) {
  return new Promise<{ infos: Info[]; status: number; headers: IncomingHttpHeaders; body: string }>(
    (resolve, reject) => {
      const infos: Info[] = []
      const req = request(
        {
          host: '127.0.0.1',
          port,
          method: 'POST',
          path: '/files/',
          headers: {
            'Content-Length': String(body.length),
            'Upload-Draft-Interop-Version': '8',
            ...headers,
          },
        },
        (res) => {
          const parts: Buffer[] = []
          res.on('data', (d: Buffer) => parts.push(d))
          res.on('end', () =>
            resolve({
              infos,
              status: res.statusCode ?? 0,
              headers: res.headers,
              body: Buffer.concat(parts).toString(),
            }),
          )
        },
      )
      req.on('information', (info) => {
        infos.push({ status: info.statusCode, message: info.statusMessage, headers: info.headers })
      })
      req.on('error', reject)
      req.end(body)
    },
  )
}

describe('104 Upload Resumption Supported on Node 20', () => {
  test("a creation's 104 has Location, interop version, Upload-Limit; then the 201", async () => {
    const limit = formatUploadLimit({ maxSize: 1_000_000, maxAgeSec: 3600 }, 8)
    let sent: boolean | undefined
    const port = await listen((req, res) => {
      sent = sendUploadResumptionSupported(res, {
        location: '/files/abc123',
        interopVersion: 8,
        uploadLimit: limit,
      })
      req.resume()
      req.on('end', () => {
        res.writeHead(201, { Location: '/files/abc123', 'Upload-Complete': '?1' })
        res.end('done')
      })
    })
    const r = await post(port, Buffer.alloc(1000, 1))
    expect(sent).toBe(true)
    expect(r.infos).toHaveLength(1)
    expect(r.infos[0]!.status).toBe(104)
    expect(r.infos[0]!.message).toBe('Upload Resumption Supported')
    expect(r.infos[0]!.headers['location']).toBe('/files/abc123')
    expect(r.infos[0]!.headers['upload-draft-interop-version']).toBe('8')
    expect(r.infos[0]!.headers['upload-limit']).toBe('max-size=1000000, max-age=3600')
    expect(r.infos[0]!.headers['upload-offset']).toBeUndefined()
    expect(r.status).toBe(201)
    expect(r.headers['location']).toBe('/files/abc123')
    expect(r.headers['upload-complete']).toBe('?1')
    expect(r.body).toBe('done')
  })

  test('progress 104s (Upload-Offset, no Location) repeat before the final answer', async () => {
    const port = await listen((req, res) => {
      let seen = 0
      const first = { location: '/files/p', interopVersion: 6, uploadLimit: 'min-size=0' } as const
      sendUploadResumptionSupported(res, first)
      req.on('data', (d: Buffer) => {
        seen += d.length
        sendUploadResumptionSupported(res, { interopVersion: 6, uploadOffset: seen })
      })
      req.on('end', () => {
        res.writeHead(204)
        res.end()
      })
    })
    const r = await post(port, Buffer.alloc(200_000, 2), { 'Upload-Draft-Interop-Version': '6' })
    expect(r.infos.length).toBeGreaterThanOrEqual(2)
    expect(r.infos.every((i) => i.status === 104)).toBe(true)
    expect(r.infos.every((i) => i.headers['upload-draft-interop-version'] === '6')).toBe(true)
    expect(r.infos[0]!.headers['location']).toBe('/files/p')
    const progress = r.infos.slice(1)
    expect(progress.every((i) => i.headers['location'] === undefined)).toBe(true)
    const offsets = progress.map((i) => Number(i.headers['upload-offset']))
    expect(offsets.at(-1)).toBe(200_000)
    expect([...offsets].sort((a, b) => a - b)).toEqual(offsets)
    expect(r.status).toBe(204)
  })

  test('the same keep-alive connection serves a second request normally afterwards', async () => {
    const port = await listen((req, res) => {
      sendUploadResumptionSupported(res, { location: '/files/k', interopVersion: 8 })
      req.resume()
      req.on('end', () => res.end('ok'))
    })
    // Raw socket: two pipelined requests, to see exactly what is on the wire.
    const wire = await new Promise<string>((resolve, reject) => {
      const s = connect(port, '127.0.0.1')
      let buf = ''
      s.setEncoding('latin1')
      s.on('data', (d: string) => {
        buf += d
        if ((buf.match(/HTTP\/1\.1 200 OK/g) ?? []).length === 2 && buf.endsWith('ok')) s.end()
      })
      s.on('end', () => resolve(buf))
      s.on('error', reject)
      const one = 'POST /files/ HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\na'
      s.write(one + one)
    })
    const heads = wire.match(/HTTP\/1\.1 \d{3}[^\r]*/g)
    expect(heads).toEqual([
      'HTTP/1.1 104 Upload Resumption Supported',
      'HTTP/1.1 200 OK',
      'HTTP/1.1 104 Upload Resumption Supported',
      'HTTP/1.1 200 OK',
    ])
    expect(wire).toContain('\r\nLocation: /files/k\r\nUpload-Draft-Interop-Version: 8\r\n\r\n')
  })

  test('nothing is sent once the final head is out, or to an HTTP/1.0 client', async () => {
    const results: boolean[] = []
    const port = await listen((req, res) => {
      if (req.httpVersion === '1.0') {
        results.push(sendUploadResumptionSupported(res, { location: '/x', interopVersion: 8 }))
        res.end('old')
        return
      }
      res.writeHead(200)
      results.push(sendUploadResumptionSupported(res, { location: '/files/x', interopVersion: 8 }))
      res.end('late')
    })
    const r = await post(port, Buffer.alloc(0))
    expect(r.infos).toHaveLength(0)
    expect(r.body).toBe('late')
    const wire = await new Promise<string>((resolve, reject) => {
      const s = connect(port, '127.0.0.1')
      let buf = ''
      s.setEncoding('latin1')
      s.on('data', (d: string) => (buf += d))
      s.on('end', () => resolve(buf))
      s.on('error', reject)
      s.write('POST /files/ HTTP/1.0\r\nContent-Length: 0\r\n\r\n')
    })
    expect(wire).not.toContain(' 104 ')
    expect(wire.startsWith('HTTP/1.1 200 OK')).toBe(true)
    expect(results).toEqual([false, false])
  })

  test('a CR/LF in a header value throws instead of splitting the response', async () => {
    let thrown: unknown
    const port = await listen((_req, res) => {
      const info: ResumptionSupported = {
        location: '/files/a\r\nSet-Cookie: x=1',
        interopVersion: 8,
      }
      try {
        sendUploadResumptionSupported(res, info)
      } catch (err) {
        thrown = err
      }
      res.end('safe')
    })
    const r = await post(port, Buffer.alloc(0))
    // Node's ERR_INVALID_CHAR TypeError (jest's VM realm makes instanceof unreliable here).
    expect(thrown).toMatchObject({ name: 'TypeError', code: 'ERR_INVALID_CHAR' })
    expect(r.infos).toHaveLength(0)
    expect(r.headers['set-cookie']).toBeUndefined()
    expect(r.body).toBe('safe')
  })
})
