import type { Config } from '../config/schema.js'
import { DEMO_RATE_LIMIT } from './run.js'

/*
 * The commands the demo banner suggests. The embedded config's tour (roles, writes, expiry, the rate
 * limit) only fits its own three routes; a config of one's own (`demo run --config`) gets one curl per
 * route it has, so nothing suggested answers 404.
 */

export interface BannerTarget {
  url: string
  adminUrl: string
  ca: string
  /** The routes of the config the demo runs; null for the embedded config. */
  routes: Config['routes'] | null
}

export function demoTries ({ url, adminUrl, ca, routes }: BannerTarget): string[] {
  const metrics = `  curl ${adminUrl}/metrics | grep ^portcullis_requests_total`
  if (routes !== null) {
    return [
      `  TOKEN=$(npx portcullis demo token --sub alice --role reader)   # --role <r> for the roles your policy wants`,
      ...routes.map(r => {
        const method = r.methods.includes('GET') ? 'GET' : r.methods[0] ?? 'GET'
        const flag = method === 'GET' ? '' : ` -X ${method}`
        return `  curl --cacert ${ca} -H "Authorization: Bearer $TOKEN"${flag} ${url}${r.prefix}   # route ${r.id} (${r.methods.join(', ')})`
      }),
      metrics
    ]
  }
  return [
    `  TOKEN=$(npx portcullis demo token --sub alice --role reader)`,
    `  curl --cacert ${ca} ${url}/hello                                    # 401: no token`,
    `  curl --cacert ${ca} -H "Authorization: Bearer $TOKEN" ${url}/hello   # 200 from the function`,
    `  curl --cacert ${ca} -H "Authorization: Bearer $TOKEN" -X POST ${url}/orders   # 403: readers cannot write`,
    `  W=$(npx portcullis demo token --sub bob --role writer)`,
    `  curl --cacert ${ca} -H "Authorization: Bearer $W" -X POST -d '{"item":1}' ${url}/orders   # 201`,
    `  A=$(npx portcullis demo token --sub root --role admin)`,
    `  curl --cacert ${ca} -H "Authorization: Bearer $A" ${url}/admin/users   # 200 only for admin`,
    `  curl --cacert ${ca} -H "Authorization: Bearer $(npx portcullis demo token --ttl -60)" ${url}/hello   # 401: expired`,
    `  for i in $(seq 12); do curl -s -o /dev/null -w '%{http_code} ' --cacert ${ca} -H "Authorization: Bearer $TOKEN" ${url}/hello; done; echo   # 429 after ${DEMO_RATE_LIMIT.max} per ${DEMO_RATE_LIMIT.windowSeconds}s`,
    metrics
  ]
}
