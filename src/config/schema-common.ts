import { Type, type StringOptions, type TString, type TUnsafe } from '@sinclair/typebox'

/* Building blocks every section of the config schema (schema.ts) uses. */

/** A string from a fixed list, as a plain JSON Schema `enum` (one clear error instead of one per value). */
export function StringEnum<const T extends readonly string[]> (values: T, options: { default?: T[number], description?: string } = {}): TUnsafe<T[number]> {
  return Type.Unsafe<T[number]>({ type: 'string', enum: [...values], ...options })
}

export const Id = Type.String({ pattern: '^[a-z0-9][a-z0-9_-]{0,62}$', description: 'lower-case id: letters, digits, - and _' })
/**
 * What the gateway does with a path in the config. Every path is made absolute (relative to the config
 * file) by config/load.ts, which finds them by this mark in the schema; what is checked at start:
 * read: readable; public-key: readable and a PEM public key; written (by the gateway) and watched
 * (a build output that may appear after start): nothing.
 */
export type FileUse = 'read' | 'public-key' | 'written' | 'watched'

/** The mark: a symbol, so that it stays out of the JSON Schema the editors and Ajv see. */
export const FILE_USE = Symbol.for('portcullis.config.file-use')

/** A path option: a non-empty string, marked with its use. */
export function FilePathOf (use: FileUse, options: StringOptions = {}): TString {
  return Type.String({ minLength: 1, ...options, [FILE_USE]: use } as StringOptions)
}

export const FilePath = FilePathOf('read', { description: 'file path, relative to the config file' })
export const HttpUrl = Type.String({ format: 'uri', pattern: '^https?://', description: 'absolute http(s) URL' })
