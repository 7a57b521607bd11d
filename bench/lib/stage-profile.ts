import { categorize, type Frame, type StageRule } from './stage-map.js'

/*
 * Reads a V8 CPU profile (.cpuprofile) and a sampling heap profile (.heapprofile) and sums them by
 * the categories of lib/stage-map.ts: CPU samples and sampled bytes per category, and the functions
 * with the most self samples and the most allocation, each with its category.
 */

interface CallFrame extends Frame { lineNumber: number }
interface CpuNode { id: number, callFrame: CallFrame, children?: number[] }
export interface CpuProfile { nodes: CpuNode[], samples: number[], timeDeltas: number[] }
interface HeapNode { callFrame: CallFrame, selfSize: number, children: HeapNode[] }
export interface HeapProfile { head: HeapNode }

export interface Hot { fn: string, where: string, category: string, value: number }
export interface ProfileSums {
  /** Main-thread samples per category ('idle' included). */
  samples: Record<string, number>
  /** Sampled bytes allocated per category (collected objects included). */
  bytes: Record<string, number>
  topSelf: Hot[]
  topAlloc: Hot[]
}

const where = (f: CallFrame, root: string): string => {
  const url = f.url.startsWith(root) ? f.url.slice(root.length) : f.url.replace(/^.*\/node_modules\//, '')
  return url === '' ? '(native)' : `${url}:${f.lineNumber + 1}`
}
const name = (f: CallFrame): string => f.functionName === '' ? '(anonymous)' : f.functionName
const add = (m: Map<string, Hot>, f: CallFrame, category: string, value: number, root: string): void => {
  const key = `${name(f)} ${where(f, root)}`
  const hot = m.get(key) ?? { fn: name(f), where: where(f, root), category, value: 0 }
  hot.value += value
  m.set(key, hot)
}
const top = (m: Map<string, Hot>, n: number): Hot[] => [...m.values()].sort((a, b) => b.value - a.value).slice(0, n)

/** `root`: the checkout's file URL (ending in a slash), cut from the locations shown. */
export function sumProfiles (cpu: CpuProfile, heap: HeapProfile, rules: StageRule[], root: string, n = 25): ProfileSums {
  const parent = new Map<number, number>()
  const byId = new Map(cpu.nodes.map(node => [node.id, node]))
  for (const node of cpu.nodes) for (const child of node.children ?? []) parent.set(child, node.id)
  const categoryOf = new Map<number, string>()
  const category = (id: number): string => {
    const known = categoryOf.get(id)
    if (known !== undefined) return known
    const stack: Frame[] = []
    for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) stack.push(byId.get(at)!.callFrame)
    const c = categorize(stack, rules)
    categoryOf.set(id, c)
    return c
  }
  const samples: Record<string, number> = {}
  const self = new Map<string, Hot>()
  for (const id of cpu.samples) {
    const c = category(id)
    samples[c] = (samples[c] ?? 0) + 1
    if (c !== 'idle') add(self, byId.get(id)!.callFrame, c, 1, root)
  }

  const bytes: Record<string, number> = {}
  const alloc = new Map<string, Hot>()
  const walk = (node: HeapNode, stack: Frame[]): void => {
    const here = [node.callFrame, ...stack]
    if (node.selfSize > 0) {
      const c = categorize(here, rules)
      bytes[c] = (bytes[c] ?? 0) + node.selfSize
      add(alloc, node.callFrame, c, node.selfSize, root)
    }
    for (const child of node.children) walk(child, here)
  }
  walk(heap.head, [])
  return { samples, bytes, topSelf: top(self, n), topAlloc: top(alloc, n) }
}
