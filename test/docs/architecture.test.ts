import t from 'tap'
import { readFile } from 'node:fs/promises'
import { REQUEST_PATH } from '../../src/app.js'

// The diagram in docs/architecture.md shows the request path; it must be the order app.ts registers.

t.test('docs/architecture.md shows the stages in the order of REQUEST_PATH in app.ts', async t => {
  const doc = await readFile(new URL('../../docs/architecture.md', import.meta.url), 'utf8')
  const diagram = /```mermaid\n([\s\S]*?)```/.exec(doc)?.[1]
  t.ok(diagram, 'the document has its diagram')
  const shown = [...(diagram ?? '').matchAll(/\bs(\d+)\[([^\]]+)\]/g)].sort((a, b) => Number(a[1]) - Number(b[1])).map(m => m[2])
  t.same(shown, [...REQUEST_PATH])
  const walked = [...doc.matchAll(/^\d+\. \*\*([^*]+)\*\*/gm)].map(m => m[1])
  t.same(walked, [...REQUEST_PATH], 'the request walk-through names them in the same order')
})
