export * from './layout.js'
export * from './files.js'
