/**
 * Retention: which snapshots to delete. Pure, shared by both backends, the scheduler and the
 * Retention dynamic resource.
 */
import type { Backend, SnapshotRecord } from "./backend";
import type { SnapshotPolicy } from "../components/policy";

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
    if (!s.complete && ageSeconds(s) > INCOMPLETE_GRACE_SECONDS) doomed.push(s);
  }
  return doomed;
}

/** Apply retention to one VM's snapshots now. Used by the scheduler and the Retention resource. */
export async function pruneSnapshots(
  backend: Backend,
  vmName: string,
  repository: string,
  policy: Pick<SnapshotPolicy, "keepLast" | "maxAgeSeconds">,
): Promise<{ kept: SnapshotRecord[]; deleted: SnapshotRecord[] }> {
  const all = await backend.listSnapshots(vmName, repository);
  const doomed = snapshotsToDelete(all, policy);
  for (const s of doomed) await backend.deleteSnapshot(s, repository);
  const ids = new Set(doomed.map((s) => s.id));
  return { kept: all.filter((s) => !ids.has(s.id)), deleted: doomed };
}
