import { Type, type TUnsafe } from '@sinclair/typebox'

/* Building blocks every section of the config schema (schema.ts) uses. */

/** A string from a fixed list, as a plain JSON Schema `enum` (one clear error instead of one per value). */
export function StringEnum<const T extends readonly string[]> (values: T, options: { default?: T[number], description?: string } = {}): TUnsafe<T[number]> {
  return Type.Unsafe<T[number]>({ type: 'string', enum: [...values], ...options })
}

export const Id = Type.String({ pattern: '^[a-z0-9][a-z0-9_-]{0,62}$', description: 'lower-case id: letters, digits, - and _' })
export const FilePath = Type.String({ minLength: 1, description: 'file path, relative to the config file' })
export const HttpUrl = Type.String({ format: 'uri', pattern: '^https?://', description: 'absolute http(s) URL' })
