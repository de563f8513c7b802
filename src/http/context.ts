import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Logger } from 'pino'

/** One request as a family handler sees it. */
export interface RequestContext {
  readonly req: IncomingMessage
  readonly res: ServerResponse
  readonly url: URL
  /** The raw (still percent-encoded) path, for families that split on encoded separators. */
  readonly rawPath: string
  readonly reqId: string
  readonly log: Logger
  /** Aborted when the client goes away before the response is sent. */
  readonly signal: AbortSignal
}

/**
 * An API family mounted under a path prefix. `handle` answers true when it took the request.
 * Errors it throws are answered by its own `sendError` (its error body and status table).
 */
export interface Family {
  readonly name: string
  readonly prefix: string
  handle(ctx: RequestContext): Promise<boolean>
  sendError(ctx: RequestContext, err: unknown): void
  close?(): Promise<void>
}
