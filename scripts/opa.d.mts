// Types for scripts/opa.mjs, so TypeScript tests can compile ad-hoc policies with the pinned OPA.
export declare const OPA_VERSION: string
export declare const DEFAULT_POLICIES_DIR: string
export declare const DEFAULT_BUNDLE: string
export declare const DEFAULT_ENTRYPOINTS: string[]
export declare const GATEWAY_ENTRYPOINT: string
export declare function cachedOpaPath (): string
export declare function resolveOpa (): Promise<string>
export declare function buildBundle (opts?: {
  policiesDir?: string
  out?: string
  entrypoints?: string[]
  capabilities?: string
  force?: boolean
  /** opa check --strict with the input schema and capabilities first (default: for policies/ only). */
  check?: boolean
}): Promise<{ out: string, built: boolean }>
export declare function checkPolicies (opts?: { policiesDir?: string, schema?: string, capabilities?: string }): Promise<void>
