export { createLogger, LOG_REDACT_PATHS, type Logger } from './logger.js'
export {
  isSensitiveParam,
  maskUrl,
  maskUrlsIn,
  redactUrl,
  scrubSecrets,
  REDACTED,
} from './redact.js'
