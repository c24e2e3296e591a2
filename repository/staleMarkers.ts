/**
 * Pending markers (`<id>.pending.json`) of takes whose writer died (killed scheduler, host
 * crash) would otherwise pile up as "incomplete" snapshots (issue 14, point 9). The next take of
 * that VM and every gc remove those whose writer is dead.
 */
import { readdir, readFile, stat } from "fs/promises";
import { join } from "path";
import { isErrno, unlinkIfExists } from "./fsutil";
import { isSnapshotId, parsePending, PENDING_SUFFIX, PendingMarker } from "./manifest";

export interface WriterContext {
  hostname: string;
  now: number;
  pidAlive(pid: number): boolean;
  /** A marker from another host (whose pid cannot be checked) older than this is abandoned. */
  foreignGraceMs: number;
}

/**
 * Decision: is the writer of this marker gone? On this host: its pid no longer exists. From
 * another host: the marker is older than the grace period (no take runs that long). An
 * unreadable marker counts as abandoned once older than the grace period.
 */
export function pendingWriterDead(marker: Pick<PendingMarker, "pid" | "hostname"> | undefined, mtimeMs: number, ctx: WriterContext): boolean {
  const old = ctx.now - mtimeMs > ctx.foreignGraceMs;
  if (!marker) return old;
  if (marker.hostname === ctx.hostname) return !ctx.pidAlive(marker.pid);
  return old;
}

/** Remove the pending markers of dead writers in one VM directory; returns the removed paths. */
export async function removeDeadPendingMarkers(vmDir: string, ctx: WriterContext): Promise<string[]> {
  let names: string[];
  try {
    names = await readdir(vmDir);
  } catch (e) {
    if (isErrno(e, "ENOENT", "ENOTDIR")) return [];
    throw e;
  }
  const removed: string[] = [];
  for (const n of names) {
    if (!n.endsWith(PENDING_SUFFIX) || !isSnapshotId(n.slice(0, -PENDING_SUFFIX.length))) continue;
    const path = join(vmDir, n);
    let text: string;
    let mtimeMs: number;
    try {
      mtimeMs = (await stat(path)).mtimeMs;
      text = await readFile(path, "utf8");
    } catch (e) {
      if (isErrno(e, "ENOENT")) continue;
      throw e;
    }
    if (pendingWriterDead(parsePending(text), mtimeMs, ctx) && (await unlinkIfExists(path))) removed.push(path);
  }
  return removed;
}
