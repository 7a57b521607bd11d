// Types for scripts/test-deps.mjs, so TypeScript test helpers read the same table of tools.
export declare const SUITE_TOOLS: Record<string, string>
export declare const CONTAINER_TOOLS: Record<string, string>
export declare const ALL_TOOLS: Record<string, string>
export declare function findTool (name: string): string | undefined
export declare function missingPackages (tools: Record<string, string>): string[]
