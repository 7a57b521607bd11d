import { existsSync } from 'node:fs'
import { dirname, join, relative } from 'node:path'

/*
 * The demo's policy bundle (build/bundle.tar.gz, compiled from the package's policies/). `npm start`
 * builds it before the demo starts; `portcullis demo run` on its own builds it here when it is missing,
 * with the pinned OPA (scripts/opa.mjs, as `npm run policy:build`), instead of starting a gateway that
 * answers 503 until a bundle appears. When OPA cannot be had, it says how to build the bundle.
 */

// Declared here, not imported from scripts/opa.d.mts: the image builds src/ without scripts/.
interface OpaScript {
  OPA_VERSION: string
  DEFAULT_POLICIES_DIR: string
  buildBundle: (opts: { out?: string }) => Promise<{ out: string }>
}

// Loaded at run time: the script lives outside src/ and is shared with npm scripts and tests.
const opaScript = async (): Promise<OpaScript> => import(new URL('../../scripts/opa.mjs', import.meta.url).href) as Promise<OpaScript>

/** Builds `bundle` from the package's policies when it does not exist; throws a how-to when it cannot. */
export async function ensureDemoBundle (bundle: string, log: (line: string) => void): Promise<void> {
  if (existsSync(bundle)) return
  const opa = await opaScript()
  const root = dirname(opa.DEFAULT_POLICIES_DIR)
  log(`building the demo's policy bundle ${relative(process.cwd(), bundle) || bundle} from ${opa.DEFAULT_POLICIES_DIR} with OPA ${opa.OPA_VERSION} (the first time, OPA is installed with go install: about 3 minutes)`)
  try {
    await opa.buildBundle({ out: bundle })
  } catch (err) {
    throw new Error(`the demo's policy bundle ${bundle} is missing and could not be built: ${(err as Error).message}\n` +
      `Build it with \`node ${join(root, 'scripts/opa.mjs')} build\` (what \`npm run policy:build\` runs; it needs Go to install OPA ${opa.OPA_VERSION} once, ` +
      `or opa ${opa.OPA_VERSION} on PATH), then run the demo again.`, { cause: err })
  }
}
