/**
 * A fixed-interval protection policy as CloudStack's own createSnapshotPolicy (pure).
 *
 * CloudStack schedules volume snapshots itself when given intervaltype HOURLY | DAILY |
 * WEEKLY | MONTHLY, a schedule ("MM" hourly, "MM:HH" daily, "MM:HH:D" weekly with D 1-7,
 * "MM:HH:DD" monthly), maxsnaps and a timezone. Those are disk-only volume snapshots: no
 * memory, and on KVM they are refused for a running VM unless the operator enabled
 * kvm.snapshot.enabled. So only a policy that is fixed-interval, disk-only, and whose interval
 * is exactly one of those periods can be handed to CloudStack; anything else stays with our
 * scheduler (createVMSnapshot with memory).
 */
import type { SnapshotPolicy } from "../../core/policy";

export type IntervalType = "HOURLY" | "DAILY" | "WEEKLY" | "MONTHLY";

export interface CloudStackSnapshotPolicyParams {
  volumeid: string;
  intervaltype: IntervalType;
  schedule: string;
  maxsnaps: number;
  timezone: string;
}

export type SnapshotPolicyMapping =
  | { ok: true; params: CloudStackSnapshotPolicyParams }
  | { ok: false; reason: string };

const PERIODS: Array<[number, IntervalType]> = [
  [3600, "HOURLY"],
  [86_400, "DAILY"],
  [604_800, "WEEKLY"],
];

export interface PolicyMappingOptions {
  /** Minute past the hour (and hour of day, day of week/month) the snapshots run at. Default 0, 0, 1, 1. */
  minute?: number;
  hour?: number;
  dayOfWeek?: number;
  dayOfMonth?: number;
  timezone?: string;
  /** True when the operator enabled kvm.snapshot.enabled (required if the VM runs while snapshotted). */
  kvmSnapshotEnabled?: boolean;
  /** Map a monthly policy: intervals of 28-31 days. Default false. */
  allowMonthly?: boolean;
}

export function toCloudStackSnapshotPolicy(
  policy: Pick<SnapshotPolicy, "loadAdaptive" | "minIntervalSeconds" | "includeMemory" | "keepLast">,
  volumeId: string,
  opts: PolicyMappingOptions = {},
): SnapshotPolicyMapping {
  if (policy.loadAdaptive) return { ok: false, reason: "the policy is load-adaptive; CloudStack can only schedule fixed intervals - our scheduler runs it" };
  if (policy.includeMemory) {
    return { ok: false, reason: "the policy captures memory; CloudStack's snapshot policies take disk-only volume snapshots - our scheduler runs it (createVMSnapshot snapshotmemory=true)" };
  }
  if (!opts.kvmSnapshotEnabled) {
    return { ok: false, reason: "on KVM, CloudStack refuses volume snapshots of a running VM unless kvm.snapshot.enabled is true - our scheduler runs it" };
  }
  const minute = opts.minute ?? 0;
  const hour = opts.hour ?? 0;
  const pad = (n: number) => String(n).padStart(2, "0");
  let intervaltype: IntervalType | undefined;
  for (const [secs, t] of PERIODS) if (policy.minIntervalSeconds === secs) intervaltype = t;
  if (!intervaltype && opts.allowMonthly && policy.minIntervalSeconds >= 28 * 86_400 && policy.minIntervalSeconds <= 31 * 86_400) intervaltype = "MONTHLY";
  if (!intervaltype) {
    return { ok: false, reason: `an interval of ${policy.minIntervalSeconds} s is not hourly, daily, weekly or monthly - our scheduler runs it` };
  }
  const schedule =
    intervaltype === "HOURLY"
      ? pad(minute)
      : intervaltype === "DAILY"
        ? `${pad(minute)}:${pad(hour)}`
        : intervaltype === "WEEKLY"
          ? `${pad(minute)}:${pad(hour)}:${opts.dayOfWeek ?? 1}`
          : `${pad(minute)}:${pad(hour)}:${pad(opts.dayOfMonth ?? 1)}`;
  return { ok: true, params: { volumeid: volumeId, intervaltype, schedule, maxsnaps: policy.keepLast, timezone: opts.timezone ?? "UTC" } };
}
