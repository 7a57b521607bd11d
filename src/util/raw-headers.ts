/**
 * How many times a header field occurs in Node's raw header list (name, value, name, value, ...).
 * Node keeps only the first of some duplicated fields (Host, Authorization) in `headers`, so a
 * duplicate can only be seen here. `name` is lower-case.
 */
export function countRawHeader (rawHeaders: readonly string[], name: string): number {
  let n = 0
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const field = rawHeaders[i]!
    if (field.length === name.length && field.toLowerCase() === name) n++
  }
  return n
}
