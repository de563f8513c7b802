/**
 * Ferry's browser uploader: Uppy's Dashboard (drag and drop, progress per file, pause and resume)
 * over Uppy's tus plugin, which talks to Ferry's tus endpoint. Bundled by scripts/build-web.mjs;
 * the server fills in the endpoint (a meta tag) when it serves the page.
 *
 * Resume after a reload: tus-js-client keeps each upload's URL in localStorage under a
 * fingerprint of the file (Uppy's file id: name, type, size, last modified, and the endpoint).
 * Adding the same file again finds it, asks the server for its offset (HEAD) and continues.
 */
import Uppy, { type UppyFile } from '@uppy/core'
import Dashboard from '@uppy/dashboard'
import Tus from '@uppy/tus'
import './uploader.css'

type Meta = Record<string, unknown>
type Body = Record<string, never>

const metaOf = (name: string) =>
  document.querySelector<HTMLMetaElement>(`meta[name="${name}"]`)?.content ?? ''

function tusEndpoint(): string {
  // Absolute, because tus-js-client keys the stored fingerprints by the endpoint it was given.
  return new URL(metaOf('ferry-tus-endpoint') || '/files/', window.location.href).href
}

/** The server's Tus-Max-Size: a larger file is refused when added, not after it started. */
function maxFileSize(): number | null {
  const n = Number(metaOf('ferry-max-file-bytes'))
  return Number.isSafeInteger(n) && n > 0 ? n : null
}

/** The "Finished" list: one link per finished upload (GET on it returns the file). */
function addFinished(file: UppyFile<Meta, Body> | undefined, url: string | undefined): void {
  const list = document.getElementById('finished')
  const section = document.getElementById('finished-section')
  if (list === null || section === null || url === undefined) return
  const item = document.createElement('li')
  const link = document.createElement('a')
  link.href = url
  link.textContent = file?.name ?? url
  link.dataset['file'] = file?.name ?? ''
  item.append(link)
  list.append(item)
  section.hidden = false
}

const uppy = new Uppy<Meta, Body>({
  autoProceed: true,
  restrictions: { maxFileSize: maxFileSize() },
})
uppy.use(Dashboard, {
  target: '#dashboard',
  inline: true,
  width: '100%',
  height: 420,
  hideProgressDetails: false,
  showLinkToFileUploadResult: true,
  proudlyDisplayPoweredByUppy: false,
  note: 'Files upload as soon as they are added.',
})
uppy.use(Tus, {
  endpoint: tusEndpoint(),
  // A flaky link loses connections for longer than tus-js-client's default 0/1/3/5 s: keep trying
  // for about a minute before the Dashboard shows the file as failed (its retry button goes on).
  retryDelays: [0, 1000, 3000, 5000, 10_000, 20_000, 30_000],
  // The finished upload's URL stays in the Finished list; a stale fingerprint would only make the
  // same file, added again, "resume" an upload that is already complete.
  removeFingerprintOnSuccess: true,
  limit: 3,
})
uppy.on('upload-success', (file, response) => addFinished(file, response.uploadURL))
