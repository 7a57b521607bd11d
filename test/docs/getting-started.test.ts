import t from 'tap'
import { readFile } from 'node:fs/promises'
import { resolve } from 'node:path'
import { createGuideShell, createGuideWorkspace, GUIDE_CLI, guideSteps, outputMatches } from '../helpers/guide.js'

/*
 * Walks docs/getting-started.md as a reader would: every ```sh block is run in order, in a copy of the
 * project, with the real gateway, demo issuer and demo function, and every block the guide marks
 * *output* must equal what the commands before it printed (`…` stands for a varying part, such as a
 * request id). The only rewrites: the demo's fixed ports become free ones, `npm ci && npm start`
 * becomes what `npm start` runs after compiling TypeScript (`npm test` has built dist/): the policy
 * build and `node dist/cli.js demo`; and `npx portcullis` is that same dist/cli.js. Long-running commands run in the background
 * and are stopped where the guide says Ctrl-C.
 */

const guide = await readFile(resolve(import.meta.dirname, '../../docs/getting-started.md'), 'utf8')
const workspace = await createGuideWorkspace(t)
const { dir } = workspace

function rewrite (code: string): string {
  return workspace.rewrite(code.replace('npm ci && npm start', `node scripts/opa.mjs build >/dev/null && ${GUIDE_CLI} demo run --ports ${workspace.portList}`))
}

t.test('every command of the getting-started guide works and prints what the guide shows', async t => {
  const shell = createGuideShell(t, dir)
  const all = guideSteps(guide)
  t.ok(all.length >= 6, 'the guide has its steps')
  t.ok(all.filter(s => s.output !== undefined).length >= 4, 'and shows their output')
  for (const step of all) {
    const code = rewrite(step.code.trim())
    const name = step.code.trim().split('\n')[0]!
    if (/demo run|npm start/.test(step.code)) {
      t.match(await shell.startBackground(code, /"portcullis is listening"|Portcullis demo is running/), /listening|running/, `${name}: running`)
      continue
    }
    if (step.code.includes('demo config')) await shell.stopBackground() // the guide stops the demo first
    const res = await shell.run(code)
    t.equal(res.code, 0, `${name}: exit 0\n${res.out}`)
    if (step.output !== undefined) {
      t.ok(outputMatches(res.out, step.output), `${name}: prints what the guide shows`, { found: res.out, wanted: step.output })
    }
  }
})
