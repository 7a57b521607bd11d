import t from 'tap'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { copyProject, createBackgrounds, demoRewriter, matches, ROOT, runBlock, steps as guideSteps } from '../helpers/docs-walk.js'

/*
 * Walks docs/policy-change.md as a reader would (test/helpers/docs-walk.ts): every ```sh block in order,
 * in a copy of the project, with the real gateway, demo issuer and function, the pinned OPA and the
 * built CLI; every *output* block must equal what its commands printed. The only rewrites: the demo's
 * fixed ports become free ones, and `npx portcullis` is dist/cli.js (`npm test` has built it).
 */

// Three gateway starts, two policy builds and opa test: minutes on a loaded 2-core machine.
t.setTimeout(600_000)

const guide = await readFile(join(ROOT, 'docs/policy-change.md'), 'utf8')
const dir = t.testdir()
await copyProject(dir)
const { rewrite } = await demoRewriter()
const background = createBackgrounds(dir)
t.teardown(() => background.stop())

t.test('every command of the policy-change guide works and prints what the guide shows', async t => {
  const steps = guideSteps(guide)
  t.ok(steps.length >= 10, 'the guide has its steps')
  t.ok(steps.filter(s => s.output !== undefined).length >= 7, 'and shows their output')
  t.ok(steps.some(s => s.code.includes('policy replay')) && steps.some(s => s.code.includes('shadow:')), 'replay and shadow are among them')
  for (const step of steps) {
    const code = rewrite(step.code.trim())
    const name = step.code.trim().split('\n')[0]!
    if (step.stopFirst) await background.stop()
    if (step.code.includes('demo run')) {
      t.match(await background.start('demo', code, /Portcullis demo is running/), /running/, `${name}: running`)
      continue
    }
    const res = await runBlock(dir, code)
    t.equal(res.code, 0, `${name}: exit 0\n${res.out}`)
    if (step.output !== undefined) t.ok(matches(res.out, step.output), `${name}: prints what the guide shows`, { found: res.out, wanted: step.output })
  }
})
