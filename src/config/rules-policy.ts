import type { ConfigProblem } from '../errors.js'
import type { Config } from './schema.js'

/* The rules of the policy and decisionLog sections the schema cannot state (config/load.ts runs them). */

/** One bundle source; bundle servers and decision-log collectors over https unless plaintext is asked for. */
export function checkPolicy (input: Config): ConfigProblem[] {
  const problems: ConfigProblem[] = []
  const policy = input.policy as Partial<Config['policy']> | undefined
  if (policy !== null && typeof policy === 'object') {
    problems.push(...checkBundleSource(policy, '/policy'))
    // The shadow policy's source follows the same rules (its files are resolved and read like every path).
    if (policy.shadow !== null && typeof policy.shadow === 'object') problems.push(...checkBundleSource(policy.shadow, '/policy/shadow'))
  }
  const upload = (input.decisionLog as Partial<Config['decisionLog']> | undefined)?.http
  if (upload !== undefined && typeof upload.url === 'string' && !upload.url.startsWith('https://') && upload.plaintext !== true) {
    problems.push({ path: '/decisionLog/http/url', message: 'must be an https URL (set plaintext: true only for local development)' })
  }
  return problems
}

/** Exactly one of bundle and server; a server over https (or plaintext by choice), its client cert and key together. */
function checkBundleSource (section: Partial<Pick<Config['policy'], 'bundle' | 'server'>>, path: string): ConfigProblem[] {
  const problems: ConfigProblem[] = []
  const sources = [section.bundle, section.server].filter(s => s !== undefined).length
  if (sources !== 1) problems.push({ path, message: 'needs exactly one bundle source: bundle (a file or folder) or server' })
  const server = section.server
  if (server !== undefined && server !== null && typeof server === 'object') {
    if (typeof server.url === 'string' && !server.url.startsWith('https://') && !server.plaintext) problems.push({ path: `${path}/server/url`, message: 'must be an https URL (set plaintext: true only for local development)' })
    if ((server.tls?.cert === undefined) !== (server.tls?.key === undefined)) problems.push({ path: `${path}/server/tls`, message: 'cert and key go together' })
  }
  return problems
}
