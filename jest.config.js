// Tests are compiled by `tsc -b` (npm's pretest) and run from dist/ as native ESM:
// the worker pool must load compiled workers anyway, and this keeps one build for both.
export default {
  testEnvironment: 'node',
  roots: ['<rootDir>/dist/test'],
  testMatch: ['**/*.test.js'],
  transform: {},
  globalSetup: '<rootDir>/dist/test/helpers/global-setup.js',
  globalTeardown: '<rootDir>/dist/test/helpers/global-teardown.js',
  testTimeout: 60000,
  maxWorkers: 2,
  verbose: true,
}
