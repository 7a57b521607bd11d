import t from 'tap'
import { readdirSync, readFileSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { dirname, join, relative, resolve, sep } from 'node:path'
import { fileURLToPath } from 'node:url'
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

// The walls docs/architecture.md describes: stages meet only through pipeline/types.ts (and request
// decorators); a stage never imports another stage, app.ts or server.ts.
t.test('no stage imports another stage, app.ts or server.ts', async t => {
  const pipeline = fileURLToPath(new URL('../../src/pipeline/', import.meta.url))
  const stages = readdirSync(pipeline, { withFileTypes: true }).filter(e => e.isDirectory()).map(e => e.name)
  t.ok(stages.length >= 7, `${stages.length} stage folders`)
  const crossings: string[] = []
  for (const stage of stages) {
    for (const file of readdirSync(join(pipeline, stage), { recursive: true, encoding: 'utf8' }).filter(f => f.endsWith('.ts'))) {
      const path = join(pipeline, stage, file)
      for (const [, target] of readFileSync(path, 'utf8').matchAll(/from '(\.[^']+)'/g)) {
        const resolved = relative(pipeline, resolve(dirname(path), target!))
        const [top] = resolved.split(sep)
        const crosses = (stages.includes(top!) && top !== stage) || /^\.\.[/\\](app|server)\.js$/.test(resolved)
        if (crosses) crossings.push(`${stage}/${file} imports ${target}`)
      }
    }
  }
  t.same(crossings, [])
})
