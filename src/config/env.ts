import type { ConfigProblem } from './load.js'

/*
 * `${NAME}` and `${NAME:-default}` in config values, substituted before validation, and how an unset
 * variable is reported: once, where it is first used, and without the problems its empty value causes
 * further on.
 */

export const UNSET = /^environment variable \S+ is not set/
export const UNSET_HINT = 'Set each variable in the environment (NAME=value npx portcullis ...), or give it a default in the file: ${NAME:-default}.'

const ENV_REF = /\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/g

export function substituteEnv (node: unknown, path: string, env: NodeJS.ProcessEnv, problems: ConfigProblem[]): unknown {
  if (typeof node === 'string') {
    return node.replace(ENV_REF, (_match, name: string, fallback: string | undefined) => {
      const v = env[name]
      // As in the shell: ${NAME:-default} takes the default when NAME is unset or empty.
      if (v !== undefined && (v !== '' || fallback === undefined)) return v
      if (fallback !== undefined) return fallback
      problems.push({ path, message: `environment variable ${name} is not set` })
      return ''
    })
  }
  if (Array.isArray(node)) return node.map((v, i) => substituteEnv(v, `${path}/${i}`, env, problems))
  if (node !== null && typeof node === 'object') {
    const out: Record<string, unknown> = {}
    for (const [k, v] of Object.entries(node)) out[k] = substituteEnv(v, `${path}/${escapePointer(k)}`, env, problems)
    return out
  }
  return node
}

export function escapePointer (key: string): string {
  return key.replaceAll('~', '~0').replaceAll('/', '~1')
}

/** One problem per unset variable, at its first use, naming the other places that use it. */
export function onceEach (unset: ConfigProblem[]): ConfigProblem[] {
  const byMessage = new Map<string, string[]>()
  for (const p of unset) byMessage.set(p.message, [...byMessage.get(p.message) ?? [], p.path])
  return [...byMessage].map(([message, [first, ...more]]) => ({
    path: first!,
    message: more.length === 0 ? message : `${message} (also used at ${more.slice(0, 3).join(', ')}${more.length > 3 ? ` and ${more.length - 3} more` : ''})`
  }))
}

// A value left empty by an unset variable fails later checks too ("file not readable: /gateway.crt",
// "must be an https URL"): the variable is the one problem there.
export function withoutConsequences (problems: ConfigProblem[], unset: ConfigProblem[]): ConfigProblem[] {
  const emptied = new Set(unset.map(p => p.path))
  return problems.filter(p => UNSET.test(p.message) || !emptied.has(p.path))
}
