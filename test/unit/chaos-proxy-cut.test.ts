/**
 * The chaos proxy's cut is a cut: the far side gets a prefix of what was sent, never bytes from
 * after the cut point (a splice would look like corruption in the server under test).
 */
import { afterAll, beforeAll, expect, test } from '@jest/globals'
import { randomBytes } from 'node:crypto'
import { connect, createServer, type Server, type Socket } from 'node:net'
import { ChaosProxy } from '../chaos/proxy.js'

let sink: Server
let received: Promise<Buffer>
let resolveReceived: (b: Buffer) => void

beforeAll(async () => {
  sink = createServer((s: Socket) => {
    const parts: Buffer[] = []
    s.on('data', (d: Buffer) => parts.push(d))
    s.on('error', () => {})
    s.on('close', () => resolveReceived(Buffer.concat(parts)))
  })
  await new Promise<void>((r) => sink.listen(0, '127.0.0.1', () => r()))
})
afterAll(() => new Promise<void>((r) => sink.close(() => r())))

test('a cut forwards exactly the bytes before it, however the writes arrive', async () => {
  for (const afterBytes of [100_000, 1_000_003]) {
    received = new Promise((r) => {
      resolveReceived = r
    })
    const proxy = await ChaosProxy.start((sink.address() as { port: number }).port, () => ({
      kind: 'cut',
      dir: 'up',
      afterBytes,
    }))
    const data = randomBytes(4 * 1024 * 1024)
    const client = connect(proxy.port, '127.0.0.1')
    client.on('error', () => {})
    await new Promise<void>((r) => client.once('connect', () => r()))
    // Many writes at once: several reads reach the proxy before its sockets close.
    for (let off = 0; off < data.length; off += 16 * 1024) {
      client.write(data.subarray(off, off + 16 * 1024))
    }
    const got = await received
    client.destroy()
    await proxy.close()
    expect(proxy.counts.cut).toBe(1)
    expect(got.length).toBe(afterBytes)
    expect(got.equals(data.subarray(0, afterBytes))).toBe(true)
  }
})
