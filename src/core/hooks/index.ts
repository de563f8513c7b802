export {
  createHttpHooks,
  HttpHooks,
  type HookEventName,
  type HookLogger,
  type HookPayload,
  type HookStats,
  type HookUpload,
  type HttpHooksOptions,
  type PostEventName,
  type PreCreateDecision,
} from './http-hooks.js'
