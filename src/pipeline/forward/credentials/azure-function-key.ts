import { readFile } from 'node:fs/promises'
import { credentialKind } from './kind.js'

/*
 * An Azure Functions key, sent as x-functions-key: read once at start from its secret file or its
 * environment variable (config refuses an unset one).
 */
export const azureFunctionKeyKind = credentialKind({
  key: 'azureFunctionKey',
  headers: () => ['x-functions-key'],
  needsBody: () => false,
  create: async (settings, { env }) => {
    const key = 'file' in settings ? (await readFile(settings.file, 'utf8')).trim() : env[settings.env] ?? null
    // Unset since the config was checked: nothing attached, as before the registry.
    return { attach: input => { if (key !== null) input.headers['x-functions-key'] = key } }
  }
})
