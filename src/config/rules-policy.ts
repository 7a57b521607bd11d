import type { ConfigProblem } from '../errors.js'
import type { Config } from './schema.js'

/* The rules of the policy and decisionLog sections the schema cannot state (config/load.ts runs them). */

/** One bundle source; bundle servers and decision-log collectors over https unless plaintext is asked for. */
export function checkPolicy (input: Config): ConfigProblem[] {
  const problems: ConfigProblem[] = []
  const policy = input.policy as Partial<Config['policy']> | undefined
  if (policy !== null && typeof policy === 'object') {
    const sources = [policy.bundle, policy.server].filter(s => s !== undefined).length
    if (sources !== 1) problems.push({ path: '/policy', message: 'needs exactly one bundle source: bundle (a file or folder) or server' })
    const server = policy.server
    if (server !== undefined && typeof server.url === 'string') {
      if (!server.url.startsWith('https://') && !server.plaintext) problems.push({ path: '/policy/server/url', message: 'must be an https URL (set plaintext: true only for local development)' })
      if ((server.tls?.cert === undefined) !== (server.tls?.key === undefined)) problems.push({ path: '/policy/server/tls', message: 'cert and key go together' })
    }
  }
  const upload = (input.decisionLog as Partial<Config['decisionLog']> | undefined)?.http
  if (upload !== undefined && typeof upload.url === 'string' && !upload.url.startsWith('https://') && upload.plaintext !== true) {
    problems.push({ path: '/decisionLog/http/url', message: 'must be an https URL (set plaintext: true only for local development)' })
  }
  return problems
}
