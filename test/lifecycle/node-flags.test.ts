import { readFile } from 'node:fs/promises'
import t from 'tap'
import { maxSemiSpaceMiB, pretenuringNamed, SEMI_SPACE_FLAG } from '../../src/lifecycle/node-flags.js'
import { gatewayFiles, startGatewayProcess } from '../helpers/gateway-process.js'

/*
 * The gateway runs with a young generation sized for a proxy and without allocation-site pretenuring
 * (node-flags.ts). V8 reads the first only at start, so the image and `npm start` pass it; the gateway
 * turns the second off itself, unless its command line names it. The start line says what is in effect.
 */

const ROOT = new URL('../../', import.meta.url)

t.test('the semi-space size is read from the command line, else NODE_OPTIONS', async t => {
  t.equal(maxSemiSpaceMiB([], ''), null, 'Node\'s default')
  t.equal(maxSemiSpaceMiB(['--max-semi-space-size=64'], ''), 64)
  t.equal(maxSemiSpaceMiB(['--max_semi_space_size', '32'], ''), 32, 'V8 spells flags either way; the value may follow')
  t.equal(maxSemiSpaceMiB([], '--enable-source-maps --max-semi-space-size=128'), 128)
  t.equal(maxSemiSpaceMiB(['--max-semi-space-size=16'], '--max-semi-space-size=128'), 16, 'the command line wins, as in Node')
  t.equal(maxSemiSpaceMiB(['--max-semi-space-size=8', '--max-semi-space-size=24'], ''), 24, 'the last one counts')
  t.equal(maxSemiSpaceMiB(['--max-old-space-size=64'], ''), null, 'another flag')
})

t.test('pretenuring is named on the command line either way, or not at all', async t => {
  t.equal(pretenuringNamed([]), null)
  t.equal(pretenuringNamed(['--no-allocation-site-pretenuring']), false)
  t.equal(pretenuringNamed(['--allocation_site_pretenuring']), true, 'V8 spells flags either way')
  t.equal(pretenuringNamed(['--no-allocation-site-pretenuring', '--allocation-site-pretenuring']), true, 'the last one counts')
  t.equal(pretenuringNamed(['--allocation-site-pretenuring-x', '--trace-pretenuring']), null, 'other flags')
})

t.test('the image and npm start start Node with the flag', async t => {
  t.match(await readFile(new URL('Dockerfile', ROOT), 'utf8'), new RegExp(`^ENV NODE_OPTIONS=${SEMI_SPACE_FLAG}$`, 'm'))
  const pkg = JSON.parse(await readFile(new URL('package.json', ROOT), 'utf8')) as { scripts: Record<string, string> }
  t.match(pkg.scripts.start, `node ${SEMI_SPACE_FLAG} dist/cli.js`)
  // Not in the command's first line: that needs `env -S`, a GNU and BSD extension not every env has.
  const shebang = (await readFile(new URL('dist/cli.js', ROOT), 'utf8')).split('\n')[0]
  t.equal(shebang, '#!/usr/bin/env node', 'the built command\'s first line (npm run build)')
})

t.test('started with the flag, the gateway says so; started without, it says null', async t => {
  const files = await gatewayFiles(t)
  await files.writeConfig('http://127.0.0.1:9')
  const flagged = await startGatewayProcess(t, files.configFile, [], [process.execPath, SEMI_SPACE_FLAG])
  t.match(flagged.log(), /"max_semi_space_mib":32,.*"msg":"portcullis is listening"/)
  flagged.child.kill('SIGTERM')
  await flagged.exited
  const plain = await startGatewayProcess(t, files.configFile)
  t.match(plain.log(), /"max_semi_space_mib":null,.*"msg":"portcullis is listening"/, 'node dist/cli.js without it: Node\'s default, said as null')
})

t.test('the gateway turns pretenuring off unless its command line turns it on', async t => {
  const files = await gatewayFiles(t)
  await files.writeConfig('http://127.0.0.1:9')
  const plain = await startGatewayProcess(t, files.configFile)
  t.match(plain.log(), /"allocation_site_pretenuring":false,.*"msg":"portcullis is listening"/)
  plain.child.kill('SIGTERM')
  await plain.exited
  const named = await startGatewayProcess(t, files.configFile, [], [process.execPath, '--allocation-site-pretenuring'])
  t.match(named.log(), /"allocation_site_pretenuring":true,.*"msg":"portcullis is listening"/, 'named on the command line: left as named')
})
