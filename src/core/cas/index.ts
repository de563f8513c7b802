export * from './cas-store.js'
export * from './checkout.js'
export * from './gc.js'
export * from './receive.js'
