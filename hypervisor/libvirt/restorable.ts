/**
 * Is a stored snapshot self-contained, so another host can restore it alone? Its disk must not
 * depend on a file outside the snapshot: a qcow2 with a backing file (left when a take was killed
 * between the external snapshot and the block commit, so the next take stored the overlay, whose
 * backing file is the disk in the failed host's pool) or with an external data file cannot start
 * on the recovery host. Judged from the first bytes of the stored disk image - no restore, no
 * qemu-img on a materialized copy of the whole snapshot.
 */
import type { SnapshotRecord } from "../backend";
import type { Restorability } from "../backend";
import { SnapshotRepository } from "../../repository/repository";
import { isDiffSnapshot } from "./diffSnapshot";

const QCOW2_MAGIC = 0x514649fb; // "QFI\xfb"
/** The fixed part of a qcow2 header (version 2: 72 bytes; version 3 adds feature bits up to 104). */
const HEADER_BYTES = 104;
/** qcow2 v3 incompatible feature bit 2: the guest data lives in an external data file. */
const INCOMPAT_EXTERNAL_DATA_FILE = 1n << 2n;

export type DiskHeaderVerdict =
  | { kind: "not-qcow2" }
  | { kind: "need-bytes"; bytes: number }
  | { kind: "qcow2"; backingFile: string | null; externalDataFile: boolean };

/**
 * Read what matters from the start of a disk image. The header is three fixed big-endian fields
 * (QEMU's docs/interop/qcow2.txt), so a few lines here rather than materializing the whole
 * snapshot to run `qemu-img info` on it.
 */
export function readDiskHeader(head: Buffer): DiskHeaderVerdict {
  if (head.length < 4) return { kind: "need-bytes", bytes: HEADER_BYTES };
  if (head.readUInt32BE(0) !== QCOW2_MAGIC) return { kind: "not-qcow2" };
  if (head.length < 72) return { kind: "need-bytes", bytes: HEADER_BYTES };
  const version = head.readUInt32BE(4);
  const backingOffset = head.readBigUInt64BE(8);
  const backingSize = head.readUInt32BE(16);
  let externalDataFile = false;
  if (version >= 3) {
    if (head.length < 80) return { kind: "need-bytes", bytes: HEADER_BYTES };
    externalDataFile = (head.readBigUInt64BE(72) & INCOMPAT_EXTERNAL_DATA_FILE) !== 0n;
  }
  if (backingOffset === 0n || backingSize === 0) return { kind: "qcow2", backingFile: null, externalDataFile };
  const end = Number(backingOffset) + backingSize;
  if (head.length < end) return { kind: "need-bytes", bytes: end };
  return { kind: "qcow2", backingFile: head.subarray(Number(backingOffset), end).toString("utf8"), externalDataFile };
}

/** The verdict on a header, as the Backend reports it. */
export function restorabilityOf(role: string, v: DiskHeaderVerdict): Restorability {
  if (v.kind === "qcow2" && v.backingFile !== null) return { ok: false, reason: `its disk (${role}) is a qcow2 overlay whose backing file ${v.backingFile} is not in the snapshot` };
  if (v.kind === "qcow2" && v.externalDataFile) return { ok: false, reason: `its disk (${role}) keeps its data in an external file that is not in the snapshot` };
  if (v.kind === "need-bytes") return { ok: false, reason: `its disk (${role}) is shorter than its own qcow2 header says` };
  return { ok: true };
}

/** Check every disk of a stored snapshot, reading only the chunks that hold its header. */
export async function checkSnapshotRestorable(repository: string, snapshot: SnapshotRecord): Promise<Restorability> {
  const repo = new SnapshotRepository(repository);
  const manifest = await repo.readManifest(snapshot.vm, snapshot.id);
  // A differential snapshot stores the disk as raw cluster groups and restore writes a new,
  // standalone qcow2 from them: it cannot name a backing file anywhere.
  if (isDiffSnapshot(manifest)) return { ok: true };
  const disks = manifest.files.filter((f) => f.role.startsWith("disk:"));
  if (disks.length === 0) return { ok: false, reason: "it has no disk" };
  for (const f of disks) {
    let head = Buffer.alloc(0);
    let next = 0;
    let verdict = readDiskHeader(head);
    while (verdict.kind === "need-bytes" && next < f.chunks.length) {
      const c = f.chunks[next++];
      head = Buffer.concat([head, await repo.chunks.readVerified(c.sha256, c.size)]);
      verdict = readDiskHeader(head);
    }
    const r = restorabilityOf(f.role, verdict);
    if (!r.ok) return r;
  }
  return { ok: true };
}
