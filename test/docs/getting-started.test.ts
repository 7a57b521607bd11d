import t from 'tap'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { copyProject, createBackgrounds, demoRewriter, matches, ROOT, runBlock, steps } from '../helpers/docs-walk.js'
import { systemTool } from '../helpers/system-tools.js'

/*
 * Walks docs/getting-started.md as a reader would: every ```sh block is run in order, in a copy of the
 * project, with the real gateway, demo issuer and demo function, and every block the guide marks
 * *output* must equal what the commands before it printed (`…` stands for a varying part, such as a
 * request id). The only rewrites: the demo's fixed ports become free ones, `npm ci && npm start`
 * becomes what `npm start` runs after compiling TypeScript (`npm test` has built dist/): the policy
 * build and `node dist/cli.js demo`; and `npx portcullis` is that same dist/cli.js. Long-running commands run in the background
 * and are stopped where the guide says Ctrl-C. The guide's policy step runs `portcullis policy test`,
 * so the guide and the shipped policy tests cannot contradict each other (issue #25).
 */

const guide = await readFile(join(ROOT, 'docs/getting-started.md'), 'utf8')
// The guide's commands call curl through bash: a missing curl names its package here, not `command not found` mid-run.
systemTool('curl')
const dir = t.testdir()
await copyProject(dir)

const { rewrite } = await demoRewriter()

const background = createBackgrounds(dir)
t.teardown(() => background.stop())

t.test('every command of the getting-started guide works and prints what the guide shows', async t => {
  const all = steps(guide)
  t.ok(all.length >= 6, 'the guide has its steps')
  t.ok(all.filter(s => s.output !== undefined).length >= 4, 'and shows their output')
  t.ok(all.some(s => s.code.includes('npx portcullis policy test')), 'and runs the policy tests after changing the policy')
  for (const step of all) {
    const code = rewrite(step.code.trim())
    const name = step.code.trim().split('\n')[0]!
    if (/demo run|npm start/.test(step.code)) {
      t.match(await background.start('demo', code, /"portcullis is listening"|Portcullis demo is running/), /listening|running/, `${name}: running`)
      continue
    }
    if (step.code.includes('demo config')) await background.stop() // the guide stops the demo first
    const res = await runBlock(dir, code)
    t.equal(res.code, 0, `${name}: exit 0\n${res.out}`)
    if (step.output !== undefined) {
      t.ok(matches(res.out, step.output), `${name}: prints what the guide shows`, { found: res.out, wanted: step.output })
    }
  }
})
