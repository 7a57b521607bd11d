import { ALL_TOOLS, findTool } from '../../scripts/test-deps.mjs'

/*
 * The one way tests find a system tool (redis-server, nginx, chromium, ...): its absolute path, or an
 * error that names the Debian package to install, instead of `spawn ... ENOENT` from deep inside a
 * helper. The table of tools and packages is scripts/test-deps.mjs, which `npm test` runs first.
 */

export function systemTool (name: string): string {
  const pkg = ALL_TOOLS[name]
  if (pkg === undefined) throw new Error(`${name} is not in the table of scripts/test-deps.mjs: add it with its Debian package`)
  const file = findTool(name)
  if (file === undefined) {
    throw new Error(`${name} is not installed: apt-get install ${pkg} (or run \`node scripts/test-deps.mjs\` as root, which \`npm test\` does first)`)
  }
  return file
}
