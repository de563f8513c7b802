import { readFileSync } from 'node:fs'
import { randomUUID } from 'node:crypto'

let cached: string | null = null

/**
 * This host's boot id: the kernel draws a new one at every boot. Bytes a dead process wrote but
 * never flushed are still in the page cache if the boot id is the same, and may be lost if not.
 * Where it cannot be read, every start counts as a reboot (the safe answer: ranges are re-sent).
 */
export function hostBootId(): string {
  if (cached === null) {
    try {
      cached = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim() || randomUUID()
    } catch {
      cached = randomUUID()
    }
  }
  return cached
}
