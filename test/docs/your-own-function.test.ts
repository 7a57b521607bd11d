import t from 'tap'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { freePort } from '../helpers/ports.js'
import { copyProject, createBackgrounds, matches, ROOT, runBlock, steps } from '../helpers/docs-walk.js'

/*
 * Issue #25, done when: docs/functions/your-own-function.md walked in a fresh copy of the project,
 * once per platform: a function from the template, its own route and rule with a test, `policy test`
 * green, the bundle built, the function's local runner and the demo gateway started, and requests
 * judged as the rule says, every command's output what the page shows. The only rewrites: free ports
 * instead of the fixed ones, `npx portcullis` is the built dist/cli.js, and the platform's name.
 */

const PLATFORMS = ['aws-lambda', 'cloud-run', 'azure', 'node']
const page = await readFile(join(ROOT, 'docs/functions/your-own-function.md'), 'utf8')
// Four walks, each starting a gateway, a demo issuer and function, and the function's runner.
t.setTimeout(PLATFORMS.length * 240_000)

for (const platform of PLATFORMS) {
  t.test(`the page works as written for --platform ${platform}`, async t => {
    const dir = t.testdir()
    await copyProject(dir)
    const ports = { gateway: await freePort(), admin: await freePort(), issuer: await freePort(), fn: await freePort(), own: await freePort() }
    const list = `${ports.gateway},${ports.admin},${ports.issuer},${ports.fn}`
    const rewrite = (code: string): string => code
      .replaceAll('aws-lambda', platform)
      .replace('--name forecasts', `--name forecasts --port ${ports.own} --ports ${list}`)
      .replace('npx portcullis demo run', `npx portcullis demo run --ports ${list}`)
      .replaceAll('npx portcullis', 'node dist/cli.js')
      .replaceAll('127.0.0.1:8443', `127.0.0.1:${ports.gateway}`)
      .replaceAll('127.0.0.1:8446', `127.0.0.1:${ports.own}`)
    const background = createBackgrounds(dir)
    t.teardown(() => background.stop())

    const all = steps(page)
    t.ok(all.length >= 7, 'the page has its steps')
    for (const step of all) {
      const code = rewrite(step.code.trim())
      const name = step.code.trim().split('\n')[0]!
      // Outputs change only in the platform's name and ports (the commands the output suggests stay as written).
      const expected = step.output?.replaceAll('aws-lambda', platform).replaceAll('127.0.0.1:8446', `127.0.0.1:${ports.own}`)
      let out: string
      if (step.code.includes('serve.mjs')) {
        out = await background.start('function', code, /listening on/)
      } else if (step.code.includes('demo run')) {
        out = await background.start('gateway', code, /Portcullis demo is running/)
        t.match(out, `/forecasts   # route forecasts (GET, POST)`, `${name}: the banner suggests the config's route`)
      } else {
        const res = await runBlock(dir, code)
        t.equal(res.code, 0, `${name}: exit 0\n${res.out}`)
        out = res.out
      }
      if (expected !== undefined) t.ok(matches(out, expected), `${name}: prints what the page shows`, { found: out, wanted: expected })
    }
  })
}
