import t from 'tap'
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { longFunctions, MAX_LINES } from '../../scripts/long-functions.js'

// Issue 22: no function in src/ over ~80 lines without a comment saying why (`// long: <why>` above it).

const ROOT = fileURLToPath(new URL('../..', import.meta.url))

t.test(`every function in src/ over ${MAX_LINES} lines says why it is long`, async t => {
  const unexplained = longFunctions(ROOT).filter(f => !f.explained).map(f => `${f.file}:${f.line} ${f.name} (${f.lines} lines)`)
  t.same(unexplained, [], 'split these, or put a `// long: <why>` comment above them')
})

t.test('the lister finds a long function, and sees the comment that explains one', async t => {
  const dir = t.testdir({})
  mkdirSync(join(dir, 'src'))
  const body = Array.from({ length: MAX_LINES + 1 }, (_, i) => `  const v${i} = ${i}`).join('\n')
  writeFileSync(join(dir, 'src', 'a.ts'), [
    `export function bare () {\n${body}\n}`,
    `// long: a table.\nexport const told = () => {\n${body}\n}`,
    'export function short () { return 1 }'
  ].join('\n'))
  t.same(longFunctions(dir).map(f => [f.name, f.explained]), [['bare', false], ['told', true]])
})
