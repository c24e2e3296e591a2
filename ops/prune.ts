/** Applies the retention decision (core/retention) to one VM's snapshots through its backend. */
import type { Backend } from "../hypervisor/backend";
import type { SnapshotRecord } from "../core/model";
import type { SnapshotPolicy } from "../core/policy";
import { snapshotsToDelete } from "../core/retention";

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
