import t from 'tap'
import { createCloseRegistry } from '../../src/lifecycle/close-registry.js'

const logger = (): { warnings: string[], warn: (obj: object, msg: string) => void } => {
  const warnings: string[] = []
  return { warnings, warn: (obj, msg) => { warnings.push(`${(obj as { piece: string }).piece}: ${msg}`) } }
}

t.test('closes in reverse order of adding, each once, however often close is called', async t => {
  const log = logger()
  const registry = createCloseRegistry(log)
  const closed: string[] = []
  for (const name of ['keys', 'policy', 'app']) registry.add(name, async () => { closed.push(name) })
  const first = registry.close()
  t.equal(registry.close(), first, 'a second call returns the same promise')
  await first
  await registry.close()
  t.same(closed, ['app', 'policy', 'keys'])
  t.same(log.warnings, [])
})

t.test('a failure is logged, the rest still close, and the first failure is thrown', async t => {
  const log = logger()
  const registry = createCloseRegistry(log)
  const closed: string[] = []
  registry.add('store', () => { closed.push('store') })
  registry.add('pool', () => { throw new Error('pool stuck') })
  registry.add('watcher', async () => { throw new Error('watcher stuck') })
  registry.add('app', () => { closed.push('app') })
  await t.rejects(registry.close(), { message: 'watcher stuck' })
  t.same(closed, ['app', 'store'])
  t.same(log.warnings.sort(), ['pool: closing a part of the gateway failed', 'watcher: closing a part of the gateway failed'])
})

t.test('held process state is released on close; a piece added after close is closed at once', async t => {
  const registry = createCloseRegistry(logger())
  let released = 0
  t.equal(registry.hold({ value: 'store', release: async () => { released++ } }, 'store'), 'store')
  await registry.close()
  t.equal(released, 1)
  let late = false
  registry.add('late', () => { late = true })
  await new Promise(resolve => setImmediate(resolve))
  t.ok(late, 'a piece built while closing does not leak')
})
