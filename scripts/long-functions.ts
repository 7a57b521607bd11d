/*
 * Lists the functions in src/ longer than MAX_LINES that carry no comment saying why (a comment
 * containing "long:" right above the function, or above the statement holding it). Used by
 * test/docs/long-functions.test.ts; run it alone to see the list: `node --import tsx scripts/long-functions.ts`.
 */
import { readdirSync, readFileSync } from 'node:fs'
import { join, relative } from 'node:path'
import ts from 'typescript'

export const MAX_LINES = 80

export interface LongFunction { file: string, name: string, line: number, lines: number, explained: boolean }

function sourceFiles (dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap(e => {
    const path = join(dir, e.name)
    if (e.isDirectory()) return sourceFiles(path)
    return e.name.endsWith('.ts') && !e.name.endsWith('.d.ts') ? [path] : []
  })
}

function nameOf (node: ts.Node): string {
  const named = node as { name?: ts.Node }
  if (named.name !== undefined && ts.isIdentifier(named.name)) return named.name.text
  const parent = node.parent
  if (parent !== undefined && (ts.isVariableDeclaration(parent) || ts.isPropertyAssignment(parent)) && ts.isIdentifier(parent.name)) return parent.name.text
  return '<anonymous>'
}

/** The comments just above a node or the statement, declaration or property that holds it. */
function commentsAbove (node: ts.Node, text: string): string {
  const out: string[] = []
  for (let n: ts.Node | undefined = node; n !== undefined && !ts.isSourceFile(n); n = n.parent) {
    for (const c of ts.getLeadingCommentRanges(text, n.getFullStart()) ?? []) out.push(text.slice(c.pos, c.end))
    if (ts.isStatement(n) || ts.isClassElement(n) || ts.isPropertyAssignment(n)) break
  }
  return out.join('\n')
}

export function longFunctions (root: string, maxLines = MAX_LINES): LongFunction[] {
  const found: LongFunction[] = []
  for (const file of sourceFiles(join(root, 'src'))) {
    const text = readFileSync(file, 'utf8')
    const source = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true)
    const visit = (node: ts.Node): void => {
      if (ts.isFunctionLike(node) && (node as ts.FunctionLikeDeclaration).body !== undefined) {
        const start = source.getLineAndCharacterOfPosition(node.getStart(source)).line
        const end = source.getLineAndCharacterOfPosition(node.getEnd()).line
        const lines = end - start + 1
        if (lines > maxLines) {
          found.push({ file: relative(root, file), name: nameOf(node), line: start + 1, lines, explained: /\blong:/.test(commentsAbove(node, text)) })
        }
      }
      ts.forEachChild(node, visit)
    }
    visit(source)
  }
  return found
}

if (import.meta.url === `file://${process.argv[1]}`) {
  for (const f of longFunctions(process.cwd())) console.log(`${f.explained ? 'explained  ' : 'UNEXPLAINED'} ${f.file}:${f.line} ${f.name} (${f.lines} lines)`)
}
