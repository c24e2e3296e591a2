/**
 * Retention: which snapshots to delete. Pure (a fake clock is passed as `now`); ops/prune.ts
 * acts on its answer for the scheduler, the agent and the Retention dynamic resource.
 */
import type { SnapshotRecord } from "./model";
import type { SnapshotPolicy } from "./policy";

/** Incomplete snapshots younger than this may still be being written; older ones are debris. */
export const INCOMPLETE_GRACE_SECONDS = 3600;

/**
 * Keep the newest `keepLast` complete snapshots that are younger than `maxAgeSeconds`; the newest
 * complete snapshot is kept whatever its age (deleting it would leave nothing to recover from).
 */
export function snapshotsToDelete(
  snapshots: SnapshotRecord[],
  policy: Pick<SnapshotPolicy, "keepLast" | "maxAgeSeconds">,
  now: Date = new Date(),
): SnapshotRecord[] {
  const byNewest = [...snapshots].sort((a, b) => Date.parse(b.createdAt) - Date.parse(a.createdAt));
  const complete = byNewest.filter((s) => s.complete);
  const ageSeconds = (s: SnapshotRecord) => (now.getTime() - Date.parse(s.createdAt)) / 1000;
  const doomed: SnapshotRecord[] = [];
  complete.forEach((s, i) => {
    if (i === 0) return;
    const tooMany = i >= policy.keepLast;
    const tooOld = policy.maxAgeSeconds !== undefined && ageSeconds(s) > policy.maxAgeSeconds;
    if (tooMany || tooOld) doomed.push(s);
  });
  for (const s of byNewest) {
    // A take that was killed leaves a pending marker: debris at once when its writer is known dead.
    if (!s.complete && (s.writerGone || ageSeconds(s) > INCOMPLETE_GRACE_SECONDS)) doomed.push(s);
  }
  return doomed;
}
