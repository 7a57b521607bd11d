// Runs handler.mjs locally over mutual TLS. A function you run yourself serves exactly like this;
// on Cloud Run, serve the same handler over plain HTTP on $PORT (Google's front end does TLS):
//   createServer((req, res) => handle(req, res)).listen(process.env.PORT)
import { loadLocal, serveOverMtls } from './local-runner.mjs'

const local = await loadLocal()
const { handle } = await import('./handler.mjs')

await serveOverMtls(local, handle)
