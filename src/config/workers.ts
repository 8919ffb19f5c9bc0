/**
 * `server.workers`: how many processes serve the public port. YAML takes a whole number or `auto`
 * (one per core the process may use); the resolved config always holds the number.
 */
import { availableParallelism } from 'node:os';

export const MIN_WORKERS = 1;
// More workers than this only adds IPC fan-out and memory on any machine waygate targets.
export const MAX_WORKERS = 64;

export const WORKERS_HINT = `must be auto or a whole number from ${MIN_WORKERS} to ${MAX_WORKERS}`;

/** The worker count, or undefined when the value is neither `auto` nor a whole number in range. */
export function parseWorkers(value: unknown, cores: () => number = availableParallelism): number | undefined {
  if (value === 'auto') return cores();
  return Number.isSafeInteger(value) && (value as number) >= MIN_WORKERS && (value as number) <= MAX_WORKERS ? (value as number) : undefined;
}
