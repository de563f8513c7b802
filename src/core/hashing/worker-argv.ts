/**
 * Node options for Ferry's Piscina worker threads.
 *
 * Piscina (5.3) loads a task file with `require()` first and falls back to `import()`. On Node
 * 20.19+ `require()` of an ES module is on by default. Tasks that reach a fresh worker together
 * each start that load, and once, in a fresh-clone CI run, Node aborted the whole process inside
 * it: "FATAL ERROR: v8::Module::IsGraphAsync must be used on an instantiated module" from
 * `ModuleWrap::InstantiateSync` under piscina's worker.js `require`. Ferry's workers are ES modules,
 * so with require(esm) off in the workers, `require()` refuses them at once (ERR_REQUIRE_ESM) and
 * Piscina takes the asynchronous `import()` path, which the ESM loader serialises.
 *
 * Only this flag is passed: an explicit `execArgv` replaces the inherited one, and V8 or
 * process-wide options an operator gives node are refused inside a worker.
 */
const REQUIRE_ESM = '--experimental-require-module'

export function workerExecArgv(): string[] | undefined {
  // Node versions without require(esm) do not know the flag (and need none).
  return process.allowedNodeEnvironmentFlags.has(REQUIRE_ESM)
    ? ['--no-experimental-require-module']
    : undefined
}
