/**
 * Names in a DaSCH bulk ingest (dasch-swiss/dsp-ingest v0.21.1: ProjectShortcode, uploadSingleFile,
 * IngestService): project shortcodes, the client's file path inside a project's import folder,
 * asset ids and mapping.csv lines.
 */
import { randomBytes } from 'node:crypto'
import { UploadError } from '../errors.js'
import { checkRelativePath, type PathRules, DEFAULT_PATH_RULES } from '../paths.js'

/** `^\p{XDigit}{4,4}$`: exactly four hex digits, either case. */
const SHORTCODE = /^[0-9A-Fa-f]{4}$/

export function isShortcode(s: string): boolean {
  return SHORTCODE.test(s)
}

/** Extensions dsp-ingest's SupportedFileType accepts (compared lower-case). */
export const SUPPORTED_EXTENSIONS: ReadonlySet<string> = new Set([
  'jp2',
  'jpeg',
  'jpg',
  'jpx',
  'png',
  'tif',
  'tiff',
  'mp4',
  'mp3',
  'mpeg',
  'wav',
  '7z',
  'gz',
  'gzip',
  'tar',
  'tgz',
  'z',
  'zip',
  'doc',
  'docx',
  'epub',
  'pdf',
  'ppt',
  'pptx',
  'csv',
  'xls',
  'xlsx',
  'htm',
  'html',
  'json',
  'odd',
  'rng',
  'txt',
  'xml',
  'xsd',
  'xsl',
])
// `tar.gz` is in the real list too; such names end in `.gz`, which is already accepted.

/** The extension after the last dot, as written, or null. */
export function extensionOf(name: string): string | null {
  const i = name.lastIndexOf('.')
  return i <= 0 || i === name.length - 1 ? null : name.slice(i + 1)
}

export function isSupported(name: string): boolean {
  const ext = extensionOf(name)
  return ext !== null && SUPPORTED_EXTENSIONS.has(ext.toLowerCase())
}

/** AssetFilename's character rule: letters, digits and `_- .,'\`+=!<>|()[]{}`. */
const FILENAME_CHARS = /^[\p{L}\p{N}_\- .,'`+=!<>|()[\]{}]+$/u

/**
 * Checks the decoded `{file}` of an upload and answers its segments (the last one NFC-normalised).
 * dsp-ingest resolves `..` and drops empty segments; Ferry refuses them instead, with absolute
 * paths, NUL and backslashes, so a client path can never name anything outside the import folder.
 * Only the last segment is held to AssetFilename's rules, as in dsp-ingest.
 */
export function checkUploadPath(file: string, rules: PathRules = DEFAULT_PATH_RULES): string[] {
  if (file.length === 0) throw new UploadError('ERR_INVALID_PATH', 'Is empty')
  if (file.split(/[/\\]/).includes('..')) {
    throw new UploadError('ERR_INVALID_PATH', 'Cannot traverse out of the upload directory')
  }
  const segments = checkRelativePath(file, rules)
  const last = segments[segments.length - 1]!.normalize('NFC')
  segments[segments.length - 1] = last
  if (!isSupported(last))
    throw new UploadError('ERR_INVALID_PATH', 'Filename must have a valid file extension')
  if (!FILENAME_CHARS.test(last))
    throw new UploadError('ERR_INVALID_PATH', 'Filename contains invalid characters')
  return segments
}

const BASE62 = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz'

function base62(n: bigint, width: number): string {
  let s = ''
  while (n > 0n) {
    s = BASE62[Number(n % 62n)]! + s
    n /= 62n
  }
  return s.padStart(width, '0')
}

/** A new asset id like dsp-ingest's: Base62 of 128 random bits as 11 + `-` + 11 characters. */
export function newAssetId(): string {
  const b = randomBytes(16)
  return `${base62(b.readBigUInt64BE(0), 11)}-${base62(b.readBigUInt64BE(8), 11)}`
}

/** CSV field: quoted (with `"` doubled) only when it holds a comma, a quote or a line break. */
export function csvField(s: string): string {
  return /[",\r\n]/.test(s) ? `"${s.replaceAll('"', '""')}"` : s
}

export const MAPPING_HEADER = 'original,derivative'
