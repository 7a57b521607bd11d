// Preloaded into a system under test by npm run bench:stages (node --import <this file> ...), never by
// the gateway itself. SIGUSR2 starts V8's CPU profiler and its sampling heap profiler in this process's
// main thread, through the inspector; a second SIGUSR2 stops both and writes cpu.cpuprofile and
// heap.heapprofile into $PORTCULLIS_BENCH_PROFILE_DIR. The same V8 profiler as `node --cpu-prof`, but
// over the measured load alone (--cpu-prof would mix in start-up and shutdown), and with the heap
// profiler keeping objects the GC has already collected: allocation per request, not what is live.
// Files `started` and `stopped` in the same folder tell the bench when each step is done.
import { Session } from 'node:inspector/promises'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'

const dir = process.env.PORTCULLIS_BENCH_PROFILE_DIR
if (dir !== undefined && dir !== '') {
  const cpuIntervalUs = Number(process.env.PORTCULLIS_BENCH_CPU_INTERVAL_US ?? 500)
  const heapIntervalBytes = Number(process.env.PORTCULLIS_BENCH_HEAP_INTERVAL_BYTES ?? 32768)
  const session = new Session()
  session.connect()
  let state = 'idle'
  const toggle = async () => {
    if (state === 'idle') {
      state = 'starting'
      await session.post('HeapProfiler.enable')
      await session.post('HeapProfiler.startSampling', {
        samplingInterval: heapIntervalBytes,
        includeObjectsCollectedByMajorGC: true,
        includeObjectsCollectedByMinorGC: true
      })
      await session.post('Profiler.enable')
      await session.post('Profiler.setSamplingInterval', { interval: cpuIntervalUs })
      await session.post('Profiler.start')
      await writeFile(join(dir, 'started'), `${process.pid}\n`)
      state = 'running'
    } else if (state === 'running') {
      state = 'stopping'
      const { profile: cpu } = await session.post('Profiler.stop')
      const { profile: heap } = await session.post('HeapProfiler.stopSampling')
      await writeFile(join(dir, 'cpu.cpuprofile'), JSON.stringify(cpu))
      await writeFile(join(dir, 'heap.heapprofile'), JSON.stringify(heap))
      await writeFile(join(dir, 'stopped'), `${process.pid}\n`)
      state = 'done'
    }
  }
  process.on('SIGUSR2', () => {
    toggle().catch(err => { process.stderr.write(`profile hook: ${err?.stack ?? err}\n`) })
  })
}
