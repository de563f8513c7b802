import type { ServerResponse } from 'node:http'

/** Sends a JSON body (never on HEAD). */
export function sendJson(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  const text = JSON.stringify(body)
  res.writeHead(status, {
    'Content-Type': 'application/json; charset=utf-8',
    'Content-Length': Buffer.byteLength(text),
    ...headers,
  })
  res.end(res.req?.method === 'HEAD' ? undefined : text)
}

/** Sends a status with no body. */
export function sendEmpty(
  res: ServerResponse,
  status: number,
  headers: Record<string, string | number> = {},
): void {
  const noBody = status === 204 || status === 304 || (status >= 100 && status < 200)
  res.writeHead(status, noBody ? headers : { 'Content-Length': 0, ...headers })
  res.end()
}

export function sendText(
  res: ServerResponse,
  status: number,
  text: string,
  contentType = 'text/plain; charset=utf-8',
  headers: Record<string, string> = {},
): void {
  res.writeHead(status, {
    'Content-Type': contentType,
    'Content-Length': Buffer.byteLength(text),
    ...headers,
  })
  res.end(res.req?.method === 'HEAD' ? undefined : text)
}
