/**
 * Ferry's browser uploader: Uppy's Dashboard (drag and drop, progress per file, pause and resume)
 * over Uppy's tus plugin, which talks to Ferry's tus endpoint. Bundled by scripts/build-web.mjs;
 * the server fills in the endpoint (a meta tag) when it serves the page.
 *
 * Resume after a reload: tus-js-client keeps each upload's URL in localStorage under a
 * fingerprint of the file (Uppy's file id: name, type, size, last modified, and the endpoint).
 * Adding the same file again finds it, asks the server for its offset (HEAD) and continues.
 */
import Uppy from '@uppy/core'
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

interface Finished {
  readonly name: string
  readonly url: string
}

/** Kept in localStorage so the links outlive a reload; the newest FINISHED_KEPT only. */
const FINISHED_KEY = 'ferry:finished'
const FINISHED_KEPT = 100

function loadFinished(): Finished[] {
  try {
    const raw: unknown = JSON.parse(localStorage.getItem(FINISHED_KEY) ?? '[]')
    if (!Array.isArray(raw)) return []
    return raw.filter(
      (f): f is Finished => typeof f?.name === 'string' && typeof f?.url === 'string',
    )
  } catch {
    // Unreadable (another page's data, or storage off): start an empty list.
    return []
  }
}

function saveFinished(list: readonly Finished[]): void {
  try {
    localStorage.setItem(FINISHED_KEY, JSON.stringify(list.slice(-FINISHED_KEPT)))
  } catch {
    // Storage full or off: the list lasts as long as the page.
  }
}

/** The "Finished" list: one link per finished upload (GET on it returns the file). */
function renderFinished(list: readonly Finished[]): void {
  const ul = document.getElementById('finished')
  const section = document.getElementById('finished-section')
  if (ul === null || section === null) return
  ul.replaceChildren(
    ...list.map((f) => {
      const item = document.createElement('li')
      const link = document.createElement('a')
      link.href = f.url
      link.textContent = f.name
      link.dataset['file'] = f.name
      item.append(link)
      return item
    }),
  )
  section.hidden = list.length === 0
}

let finished = loadFinished()
renderFinished(finished)
document.getElementById('finished-clear')?.addEventListener('click', () => {
  finished = []
  saveFinished(finished)
  renderFinished(finished)
})

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
uppy.on('upload-success', (file, response) => {
  if (response.uploadURL === undefined) return
  finished = [...finished, { name: file?.name ?? response.uploadURL, url: response.uploadURL }]
  saveFinished(finished)
  renderFinished(finished)
})
