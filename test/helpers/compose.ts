import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { parse } from 'yaml'
import { ROOT } from './deploy-tools.js'

/*
 * docker-compose.yml as the deploy and container tests read it: its services, and each service's
 * mounts with the host side moved to this machine (./docker/certs → the test's certificate folder,
 * other ./ paths → the repository, named volumes → what the test made for them).
 */

export type ComposeService = Record<string, any>

export const compose = parse(readFileSync(join(ROOT, 'docker-compose.yml'), 'utf8'), { merge: true }) as {
  services: Record<string, ComposeService>
  networks: Record<string, { internal?: boolean, ipam?: { config: Array<{ subnet: string }> } } | null>
  volumes: Record<string, unknown>
}

export interface Mount { source: string, target: string, readOnly: boolean }

export function composeMounts (service: string, where: { certs: string, volumes?: Record<string, string> }): Mount[] {
  return ((compose.services[service]!.volumes ?? []) as string[]).map(spec => {
    const [source, target, mode] = spec.split(':') as [string, string, string | undefined]
    let host: string
    if (source.startsWith('./docker/certs')) host = where.certs + source.slice('./docker/certs'.length)
    else if (source.startsWith('./')) host = join(ROOT, source)
    else {
      const named = where.volumes?.[source]
      if (named === undefined) throw new Error(`no stand-in given for the named volume ${source} of ${service}`)
      host = named
    }
    return { source: host, target, readOnly: mode === 'ro' }
  })
}
