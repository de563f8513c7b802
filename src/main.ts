/** Process entry (`npm start`): the server, as `ferry serve` runs it (src/cli/serve.ts). */
import { runServer } from './cli/serve.js'

runServer(process.argv.slice(2))
