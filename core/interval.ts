import type { SnapshotPolicy } from "./policy";

/**
 * The paper's load-adaptive interval: short when the VM is idle, long when busy, linear in
 * between, always within [min, max].
 */
export function nextIntervalSeconds(cpuPercent: number, p: SnapshotPolicy): number {
  if (!p.loadAdaptive) return p.minIntervalSeconds;
  if (!(cpuPercent > p.cpuIdlePercent)) return p.minIntervalSeconds;
  if (cpuPercent >= p.cpuBusyPercent) return p.maxIntervalSeconds;
  const t = (cpuPercent - p.cpuIdlePercent) / (p.cpuBusyPercent - p.cpuIdlePercent);
  return p.minIntervalSeconds + t * (p.maxIntervalSeconds - p.minIntervalSeconds);
}
