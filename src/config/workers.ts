/**
 * `server.workers`: how many processes serve the public port. YAML takes a whole number or `auto`
 * (one per core the process may use); the resolved config always holds the number.
 */
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';

export const MIN_WORKERS = 1;
// More workers than this only adds IPC fan-out and memory on any machine waygate targets.
export const MAX_WORKERS = 64;

export const WORKERS_HINT = `must be auto or a whole number from ${MIN_WORKERS} to ${MAX_WORKERS}`;

/** The worker count, or undefined when the value is neither `auto` nor a whole number in range. */
export function parseWorkers(value: unknown, cores: () => number = usableCores): number | undefined {
  if (value === 'auto') return Math.min(MAX_WORKERS, Math.max(MIN_WORKERS, cores()));
  return Number.isSafeInteger(value) && (value as number) >= MIN_WORKERS && (value as number) <= MAX_WORKERS ? (value as number) : undefined;
}

/**
 * Cores this process may use: the CPUs it may run on, lowered to a container's CPU quota (cgroup v2
 * `cpu.max`, else v1 `cpu.cfs_quota_us`), since a pod limited to 2 CPUs on a 32-core node must not fork 32 workers.
 */
export function usableCores(readFile: (path: string) => string = (path) => readFileSync(path, 'utf8'), cpus: number = availableParallelism()): number {
  const quota = cgroupCpuQuota(readFile);
  return quota === undefined ? cpus : Math.max(1, Math.min(cpus, Math.ceil(quota)));
}

/** The CPU quota in cores, or undefined when none is set or no cgroup file is readable. */
export function cgroupCpuQuota(readFile: (path: string) => string): number | undefined {
  const ratio = (quota: number, period: number) => (Number.isFinite(quota) && quota > 0 && Number.isFinite(period) && period > 0 ? quota / period : undefined);
  try {
    const [quota, period] = readFile('/sys/fs/cgroup/cpu.max').trim().split(/\s+/);
    return quota === 'max' ? undefined : ratio(Number(quota), Number(period));
  } catch {
    // not cgroup v2; try v1
  }
  try {
    return ratio(Number(readFile('/sys/fs/cgroup/cpu/cpu.cfs_quota_us').trim()), Number(readFile('/sys/fs/cgroup/cpu/cpu.cfs_period_us').trim()));
  } catch {
    return undefined;
  }
}
