/**
 * What the upload service reports to whoever counts it (the metrics of one API family). Every
 * call is made on the data path, so an observer only increments: no I/O, no awaiting.
 */
export interface UploadObserver {
  /** A chunked session was opened, or a whole-file body started to arrive. */
  created(): void
  /** A session was committed, or a whole-file body was received whole and hashed. */
  finished(): void
  /** A session was cancelled (the client's DELETE). */
  terminated(): void
  /** One chunk (or one whole-file body) was received and stored, in `seconds`. */
  chunk(seconds: number): void
  /** One session was committed, in `seconds`. */
  commit(seconds: number): void
  /** An upload was answered "already stored" (content-addressed stores). */
  dedupHit(): void
}
