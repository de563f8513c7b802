/**
 * The names of upload temp files inside `<dataDir>/tmp/`, in one place: the sweep tells from a
 * name alone whose file it is and when it may go.
 *
 * - `s-<key>.<incarnation>.part`: a chunked session's file. Named after the session key AND its
 *   incarnation, and created exclusively: a session created again under the same id (after a
 *   cancel, an expiry, or a Redis that lost its data) never sees, and never deletes, bytes of an
 *   earlier one.
 * - `p-<key>.<commit owner>.part`: a commit's hand-off link to a session's file.
 * - `w-<instance>.<random>.part`: a whole-file stream or a small file to publish; the instance
 *   tells a file of a running stream from one left by a killed process.
 *
 * Keys are base64url-encoded so any key makes a valid, reversible file name.
 */
import { randomUUID } from 'node:crypto'

const encodeKey = (key: string) => Buffer.from(key).toString('base64url')

export const sessionTempName = (key: string, incarnation: string) =>
  `s-${encodeKey(key)}.${incarnation}.part`

export const handoffTempName = (key: string, owner: string) => `p-${encodeKey(key)}.${owner}.part`

export const streamTempName = (instance: string) => `w-${instance}.${randomUUID()}.part`

export type ParsedTempName =
  | { readonly kind: 's' | 'p'; readonly key: string; readonly id: string }
  | { readonly kind: 'w'; readonly instance: string }

/** What a temp file name says about its owner; null for a name none of the above. */
export function parseTempName(name: string): ParsedTempName | null {
  const w = /^w-([0-9a-f-]{36})\.[0-9a-f-]{36}\.part$/.exec(name)
  if (w) return { kind: 'w', instance: w[1]! }
  const m = /^([sp])-([A-Za-z0-9_-]*)\.([0-9a-f-]{36})\.part$/.exec(name)
  if (m === null) return null
  return { kind: m[1] as 's' | 'p', key: Buffer.from(m[2]!, 'base64url').toString(), id: m[3]! }
}

/**
 * Files a sweep leaves alone this long after their last change: a temp file exists before its
 * record.
 */
export const TEMP_GRACE_MS = 60_000
