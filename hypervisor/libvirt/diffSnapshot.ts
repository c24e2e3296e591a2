/**
 * Snapshots that store what changed (issue 11): memory as page groups parsed out of QEMU's
 * migration stream, the disk as the clusters the guest wrote since the previous snapshot.
 *
 * Take:
 *  0. Repair (safe at every kill point): the VM's disk chain must be `base` or
 *     `kept overlay of the newest complete snapshot <- base`; anything else (an overlay left by
 *     an interrupted snapshot) is folded into the base (`blockcommit --active --pivot`) and the
 *     disk is read in full this time; staging files of this VM that are not in the chain
 *     (overlays, memory files) and pending markers of dead takers are removed. Each is logged.
 *  1. The capture is today's external snapshot (snapshots.ts: memory file in libvirt's
 *     save-image format + a fresh overlay that freezes the disk), live or not as today.
 *  2. Memory: migrationStream.ts parses the file; RAM blocks are stored as fixed page groups
 *     (repository/pages.ts), device state and headers verbatim. A stream the parser does not
 *     know is stored as a plain file (content-defined chunks, as before), reported in `method`.
 *  3. Disk: when the frozen top image is the overlay the previous snapshot kept, only its
 *     allocated clusters (`qemu-img map`, depth 0) are read and patched onto the previous
 *     snapshot's groups; otherwise the whole frozen chain is read (logged). Stored as fixed
 *     256 KiB groups of the virtual disk, zero groups as nothing.
 *  4. Commit, then fold the previous kept overlay into the base (`blockcommit --top`) and keep
 *     the new overlay until the next snapshot. On failure everything is folded into the base.
 * Restore: the disk is rebuilt sparse and converted to qcow2; the memory image is synthesized
 * (libvirt header + XML + QEMU stream) and given to `virsh restore`.
 */
import { createHash } from "crypto";
import * as fs from "fs";
import { hostname } from "os";
import * as path from "path";
import type { SnapshotRecord } from "../backend";
import { SnapshotRepository, PendingSnapshot } from "../../repository/repository";
import type { Manifest, ManifestFile } from "../../repository/manifest";
import { parsePending } from "../../repository/manifest";
import { GROUP_BYTES, groupCount, KnownGroups, PreviousRegion, readRegion, RegionLayout, SEGMENT_GROUPS, storeRegion, GroupInput } from "../../repository/pages";
import { HostFiles } from "./hostFiles";
import { VirshError, VirshRunner } from "./virsh";
import { domainState } from "./domains";
import { PAGE_SIZE, parseSaveImage, readBlockGroups, readRange, UnsupportedStreamError, writeSaveImage } from "./migrationStream";
import { backingChain, mapImage, MapExtent, runQemuImg } from "./qemuImg";

export const LAYOUT_ROLE = "pv.layout";
export const LAYOUT_FORMAT = "protected-vm.diffsnap";

export interface DiffLayout {
  format: typeof LAYOUT_FORMAT;
  version: 1;
  groupBytes: number;
  segmentGroups: number;
  /** How this snapshot's memory and disk were stored, and why (reported per snapshot). */
  method: { memory: "pages" | "file" | "none"; disk: "changed-clusters" | "full-read"; notes: string[] };
  memory?: {
    headRole: string;
    tailRole: string;
    ramSectionId: number;
    footers: boolean;
    machineType: string;
    blocks: Array<{ id: string; length: number; prefix: string }>;
  };
  disks: Array<{ target: string; prefix: string; virtualSize: number; format: string; base: string; keptOverlay: string }>;
  regions: RegionLayout[];
}

export type Logger = (line: string) => void;
/**
 * Where repairs and fallbacks of a take are reported when the caller gives no logger: one JSON
 * line on stderr, so a process whose output is JSON lines (the scheduler, the agent) stays
 * parseable line by line.
 */
export const defaultLog: Logger = (line) => void process.stderr.write(JSON.stringify({ level: "info", at: new Date().toISOString(), source: "libvirt-snapshot", message: line }) + "\n");

// ------------------------------------------------------------------------ reading a snapshot

/** A small file of a snapshot (layout, headers, XML), chunks verified, whole hash checked. */
export async function readSnapshotFile(repo: SnapshotRepository, file: ManifestFile): Promise<Buffer> {
  const parts: Buffer[] = [];
  for (const c of file.chunks) parts.push(await repo.chunks.readVerified(c.sha256, c.size));
  const b = Buffer.concat(parts);
  const h = createHash("sha256").update(b).digest("hex");
  if (h !== file.sha256) throw new Error(`snapshot file ${file.role}: content hashes to ${h}, manifest says ${file.sha256}`);
  return b;
}

export interface PreviousSnapshot {
  manifest: Manifest;
  layout: DiffLayout;
  files: Map<string, ManifestFile>;
}

/** The newest complete snapshot of vm taken by this path, or undefined. */
export async function loadPrevious(repo: SnapshotRepository, vm: string): Promise<PreviousSnapshot | undefined> {
  for (const r of await repo.list(vm)) {
    if (!r.complete) continue;
    const manifest = await repo.readManifest(vm, r.id);
    const lf = manifest.files.find((f) => f.role === LAYOUT_ROLE);
    if (!lf) return undefined; // the newest complete one was taken the old way
    const layout = JSON.parse((await readSnapshotFile(repo, lf)).toString("utf8")) as DiffLayout;
    if (layout.format !== LAYOUT_FORMAT || layout.version !== 1) return undefined;
    return { manifest, layout, files: new Map(manifest.files.map((f) => [f.role, f])) };
  }
  return undefined;
}

function previousRegion(prev: PreviousSnapshot | undefined, prefix: string, size: number): PreviousRegion | undefined {
  const layout = prev?.layout.regions.find((r) => r.prefix === prefix && r.size === size);
  return layout && prev!.layout.groupBytes === GROUP_BYTES && prev!.layout.segmentGroups === SEGMENT_GROUPS ? { layout, files: prev!.files } : undefined;
}

// ------------------------------------------------------------------------ disk chain repair

export interface ChainState {
  /** The VM's active image (top of the chain). */
  top: string;
  /** The bottom of the chain (the VM's own disk). */
  base: string;
  chain: string[];
}

export async function diskChain(virsh: VirshRunner, uri: string, name: string, target: string): Promise<ChainState> {
  const { stdout } = await virsh.run(uri, ["domblklist", name, "--details"]);
  const line = stdout.split("\n").map((l) => l.trim().split(/\s+/)).find((p) => p[2] === target);
  if (!line || !line[3] || line[3] === "-") throw new Error(`${name}: disk ${target} has no source file`);
  const chain = (await backingChain(line[3])).map((c) => c.filename);
  return { top: chain[0], base: chain[chain.length - 1], chain };
}

/** Fold every overlay of the disk into its base and drop the overlays. */
async function foldAll(virsh: VirshRunner, host: HostFiles, name: string, target: string, log: Logger, why: string): Promise<void> {
  const st = await diskChain(virsh, host.uri, name, target);
  if (st.chain.length <= 1) return;
  log(`${name}: ${why}: folding ${st.chain.slice(0, -1).join(", ")} into ${st.base}`);
  await virsh.run(host.uri, ["blockcommit", name, target, "--active", "--pivot", "--wait"], { timeoutMs: 3_600_000 });
  for (const f of st.chain.slice(0, -1)) await removeStaging(host, name, f);
}

/** Remove a staging file of this VM from the pool (never anything else). */
async function removeStaging(host: HostFiles, name: string, file: string): Promise<void> {
  if (path.dirname(file) !== host.poolDir || !path.basename(file).startsWith(`${name}.pvsnap-`)) return;
  await host.remove(file).catch(() => undefined);
}

export interface RepairPlan {
  /** Fold every overlay into the base (the chain is not one a completed take leaves). */
  foldAll: boolean;
  /** Pool files (basenames) of this VM's staging that are not in the chain: remove. */
  removeFiles: string[];
}

/**
 * What to repair before a take, from the disk chain (top first), the overlay the newest complete
 * snapshot kept, and the pool's file names. A completed take leaves `kept <- base`; a take
 * killed after its capture leaves `its overlay <- kept <- base` (or `<- base`) and a memory file.
 */
export function planRepair(name: string, chain: string[], keptOverlay: string | undefined, poolFiles: string[], poolDir: string): RepairPlan {
  const foldAll = chain.length > 1 && chain[0] !== keptOverlay;
  const keep = new Set(foldAll ? [chain[chain.length - 1]] : chain);
  const removeFiles = poolFiles.filter((f) => f.startsWith(`${name}.pvsnap-`) && !keep.has(path.join(poolDir, f)));
  return { foldAll, removeFiles };
}

/**
 * Bring the VM back to a known disk chain and remove what interrupted snapshots left. Returns
 * the chain and what was done (each also logged).
 */
export async function repairBeforeTake(
  virsh: VirshRunner,
  host: HostFiles,
  repo: SnapshotRepository,
  name: string,
  target: string,
  keptOverlay: string | undefined,
  log: Logger,
): Promise<{ chain: ChainState; notes: string[] }> {
  const notes: string[] = [];
  const note = (s: string) => {
    notes.push(s);
    log(`${name}: ${s}`);
  };
  // A snapshot whose virsh client was killed goes on inside libvirt: let it finish first.
  for (let i = 0; i < 120; i++) {
    const { stdout } = await virsh.run(host.uri, ["domjobinfo", name]).catch(() => ({ stdout: "" }));
    if (!/^Job type:\s+(Unbounded|Bounded)/m.test(stdout)) break;
    if (i === 0) note("waiting for a libvirt job left by an interrupted snapshot to finish");
    await new Promise((r) => setTimeout(r, 500));
  }
  let chain = await diskChain(virsh, host.uri, name, target);
  const plan = planRepair(name, chain.chain, keptOverlay, fs.readdirSync(host.poolDir), host.poolDir);
  if (plan.foldAll) {
    note(`disk chain ${chain.chain.join(" <- ")} is not the kept overlay of the newest snapshot (a snapshot was interrupted): folded into the base`);
    await foldAll(virsh, host, name, target, () => undefined, "repair");
    chain = await diskChain(virsh, host.uri, name, target);
  }
  for (const f of plan.removeFiles) {
    note(`removed staging file ${f} left by an interrupted snapshot`);
    await removeStaging(host, name, path.join(host.poolDir, f));
  }
  // Pending markers whose taker died on this host: never restorable, only debris.
  const dir = repo.vmDir(name);
  for (const r of await repo.list(name)) {
    if (r.complete) continue;
    let marker;
    try {
      marker = parsePending(fs.readFileSync(path.join(dir, `${r.id}.pending.json`), "utf8"));
    } catch {
      marker = undefined;
    }
    if (marker && marker.hostname === hostname() && !pidAlive(marker.pid)) {
      await repo.delete(name, r.id);
      note(`removed incomplete snapshot ${r.id} (its taker, pid ${marker.pid}, is gone)`);
    }
  }
  return { chain, notes };
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

// ------------------------------------------------------------------------ disk groups

function overlapping(extents: MapExtent[], from: number, start: number, end: number): { list: MapExtent[]; next: number } {
  let i = from;
  while (i < extents.length && extents[i].start + extents[i].length <= start) i++;
  const list: MapExtent[] = [];
  for (let k = i; k < extents.length && extents[k].start < end; k++) list.push(extents[k]);
  return { list, next: i };
}

function readAt(fd: number, buf: Buffer, off: number, len: number, pos: number): void {
  let got = 0;
  while (got < len) {
    const n = fs.readSync(fd, buf, off + got, len - got, pos + got);
    if (n === 0) throw new Error(`short read at ${pos + got}`);
    got += n;
  }
}

function copyExtent(e: MapExtent, fds: number[], buf: Buffer, gStart: number, gEnd: number): void {
  const s = Math.max(e.start, gStart);
  const t = Math.min(e.start + e.length, gEnd);
  if (t <= s) return;
  if (!e.data) {
    buf.fill(0, s - gStart, t - gStart);
    return;
  }
  if (e.offset === undefined || e.compressed) throw new UnsupportedStreamError("disk", `range at ${e.start} of layer ${e.depth} cannot be read in place (compressed or not a file offset)`);
  readAt(fds[e.depth], buf, s - gStart, t - s, e.offset + (s - e.start));
}

function isZeroBuf(b: Buffer): boolean {
  for (let i = 0; i < b.length; i += GROUP_BYTES) {
    const end = Math.min(b.length, i + GROUP_BYTES);
    if (b.compare(ZERO_GROUP, 0, end - i, i, end) !== 0) return false;
  }
  return true;
}
const ZERO_GROUP = Buffer.alloc(GROUP_BYTES);

/** The disk's groups in order, each with the extents (sorted by start) that overlap it. */
function* groupsWithExtents(extents: MapExtent[], size: number): Generator<{ g: number; gs: number; ge: number; list: MapExtent[] }> {
  let cursor = 0;
  for (let g = 0; g < groupCount(size); g++) {
    const gs = g * GROUP_BYTES;
    const ge = Math.min(size, gs + GROUP_BYTES);
    const { list, next } = overlapping(extents, cursor, gs, ge);
    cursor = next;
    yield { g, gs, ge, list };
  }
}

/** Every group of the frozen image, read through its chain (first snapshot, or state lost). */
async function* fullDiskGroups(top: string, size: number): AsyncGenerator<GroupInput> {
  const chain = await backingChain(top);
  for (const c of chain) {
    if (c.encrypted || (c.format !== "qcow2" && c.format !== "raw")) throw new UnsupportedStreamError(c.filename, `disk format ${c.format}${c.encrypted ? " (encrypted)" : ""}`);
  }
  const extents = (await mapImage(top)).sort((a, b) => a.start - b.start);
  const fds = chain.map((c) => fs.openSync(c.filename, "r"));
  try {
    for (const { gs, ge, list } of groupsWithExtents(extents, size)) {
      if (!list.some((e) => e.data)) {
        yield null;
        continue;
      }
      const buf = Buffer.alloc(ge - gs);
      for (const e of list) copyExtent(e, fds, buf, gs, ge);
      yield isZeroBuf(buf) ? null : buf;
    }
  } finally {
    for (const fd of fds) fs.closeSync(fd);
  }
}

/** Groups of the frozen image = previous snapshot's groups patched with what `overlay` holds itself. */
async function* changedDiskGroups(
  repo: SnapshotRepository,
  overlay: string,
  size: number,
  prev: PreviousRegion,
  known: KnownGroups,
  counters: { changedGroups: number; bytesRead: number },
): AsyncGenerator<GroupInput> {
  const extents = (await mapImage(overlay)).filter((e) => e.depth === 0 && e.present).sort((a, b) => a.start - b.start);
  const fd = fs.openSync(overlay, "r");
  try {
    for (const { g, gs, ge, list } of groupsWithExtents(extents, size)) {
      if (!list.length) {
        yield "unchanged";
        continue;
      }
      counters.changedGroups++;
      const x = prev.layout.segments[Math.floor(g / SEGMENT_GROUPS)]?.groups[g % SEGMENT_GROUPS];
      let buf: Buffer;
      if (x) {
        const ref = known.get(x);
        if (!ref) throw new Error(`disk group ${g}: previous content ${x} is not known`);
        buf = Buffer.from(await repo.chunks.readVerified(ref.sha256, ref.size));
      } else {
        buf = Buffer.alloc(ge - gs);
      }
      for (const e of list) {
        copyExtent(e, [fd], buf, gs, ge);
        if (e.data) counters.bytesRead += Math.min(e.start + e.length, ge) - Math.max(e.start, gs);
      }
      yield isZeroBuf(buf) ? null : buf;
    }
  } finally {
    fs.closeSync(fd);
  }
}

// ------------------------------------------------------------------------ take

export interface DiffCapture {
  /** The memory file libvirt wrote (save-image format), or undefined for disk-only. */
  memFile?: string;
  /** The disk target (vda). */
  target: string;
  /** The image that was the disk's top before the capture (now frozen, read-only). */
  frozenTop: string;
  /** The new overlay the guest writes to now. */
  newOverlay: string;
  /** Chain state before the capture (after repair). */
  chainBefore: ChainState;
}

/**
 * Store a captured snapshot (memory file + frozen disk) into `pending` the differential way.
 * Returns the layout (also added to the snapshot as pv.layout).
 */
export async function storeDiffSnapshot(
  repo: SnapshotRepository,
  pending: PendingSnapshot,
  cap: DiffCapture,
  scratch: string,
  log: Logger,
  repairNotes: string[],
): Promise<DiffLayout> {
  const t0 = Date.now();
  const prev = await loadPrevious(repo, pending.vm);
  const known = new KnownGroups();
  if (prev) for (const r of prev.layout.regions) known.addRegion({ layout: r, files: prev.files });
  const layout: DiffLayout = {
    format: LAYOUT_FORMAT,
    version: 1,
    groupBytes: GROUP_BYTES,
    segmentGroups: SEGMENT_GROUPS,
    method: { memory: cap.memFile ? "pages" : "none", disk: "full-read", notes: [...repairNotes] },
    disks: [],
    regions: [],
  };

  if (cap.memFile) {
    let img;
    try {
      img = parseSaveImage(cap.memFile);
    } catch (e) {
      if (!(e instanceof UnsupportedStreamError)) throw e;
      img = undefined;
      layout.method.memory = "file";
      layout.method.notes.push(`memory stored as a whole file: ${e.message}`);
      log(`${pending.vm}: ${e.message}; storing the memory file as it is`);
      await pending.addFile("memory", cap.memFile);
    }
    if (img) {
      const headFile = path.join(scratch, "memory.head");
      const tailFile = path.join(scratch, "memory.tail");
      fs.writeFileSync(headFile, readRange(cap.memFile, 0, img.headEnd));
      fs.writeFileSync(tailFile, readRange(cap.memFile, img.tailStart, img.size));
      await pending.addFile("memory.head", headFile);
      await pending.addFile("memory.tail", tailFile);
      layout.memory = {
        headRole: "memory.head",
        tailRole: "memory.tail",
        ramSectionId: img.ramSectionId,
        footers: img.footers,
        machineType: img.machineType,
        blocks: img.blocks.map((b, i) => ({ id: b.id, length: b.length, prefix: `ram:${i}` })),
      };
      for (let i = 0; i < img.blocks.length; i++) {
        const b = img.blocks[i];
        const prefix = `ram:${i}`;
        const prevBlock = prev?.layout.memory?.blocks[i];
        const pr = prevBlock && prevBlock.id === b.id ? previousRegion(prev, prefix, b.length) : undefined;
        const res = await storeRegion(repo.chunks, known, prefix, b.length, readBlockGroups(img, b, GROUP_BYTES / PAGE_SIZE), pr);
        layout.regions.push(res.layout);
        for (const f of res.files) await pending.addStoredFile(f);
      }
    }
  }

  const memDone = Date.now();
  const chain = await backingChain(cap.frozenTop);
  const virtualSize = chain[0].virtualSize;
  const prefix = `vdisk:${cap.target}`;
  const prevDisk = prev?.layout.disks.find((d) => d.target === cap.target);
  const pr = previousRegion(prev, prefix, virtualSize);
  let groups: AsyncIterable<GroupInput>;
  const counters = { changedGroups: 0, bytesRead: 0 };
  if (prevDisk && pr && prevDisk.keptOverlay === cap.frozenTop && cap.chainBefore.top === cap.frozenTop) {
    layout.method.disk = "changed-clusters";
    groups = changedDiskGroups(repo, cap.frozenTop, virtualSize, pr, known, counters);
  } else {
    const why = !prev ? "no earlier snapshot of this kind" : !prevDisk || !pr ? "the previous snapshot has no such disk" : `the overlay kept by the previous snapshot (${prevDisk.keptOverlay}) is not the disk's top (${cap.frozenTop})`;
    layout.method.notes.push(`disk ${cap.target} read in full: ${why}`);
    log(`${pending.vm}: disk ${cap.target} read in full (${why})`);
    groups = fullDiskGroups(cap.frozenTop, virtualSize);
  }
  const res = await storeRegion(repo.chunks, known, prefix, virtualSize, groups, pr);
  layout.regions.push(res.layout);
  for (const f of res.files) await pending.addStoredFile(f);
  layout.disks.push({ target: cap.target, prefix, virtualSize, format: chain[chain.length - 1].format, base: cap.chainBefore.base, keptOverlay: cap.newOverlay });
  if (layout.method.disk === "changed-clusters") layout.method.notes.push(`disk ${cap.target}: ${counters.changedGroups} changed groups, ${counters.bytesRead} bytes read from the overlay`);

  log(`${pending.vm}: memory stored in ${memDone - t0} ms, disk in ${Date.now() - memDone} ms`);
  const layoutFile = path.join(scratch, "layout.json");
  fs.writeFileSync(layoutFile, JSON.stringify(layout));
  await pending.addFile(LAYOUT_ROLE, layoutFile);
  return layout;
}

/**
 * After a committed snapshot: fold the overlays below the new one into the base and remove them,
 * so the chain is `new overlay <- base` (the new overlay is kept until the next snapshot).
 */
export async function foldBelowNewOverlay(virsh: VirshRunner, host: HostFiles, name: string, target: string): Promise<void> {
  const st = await diskChain(virsh, host.uri, name, target);
  if (st.chain.length <= 2) return;
  const top = st.chain[1];
  await virsh.run(host.uri, ["blockcommit", name, target, "--top", top, "--base", st.base, "--wait"], { timeoutMs: 3_600_000 });
  for (const f of st.chain.slice(1, -1)) await removeStaging(host, name, f);
}

/** After a failed take: everything back into the base (the next snapshot reads the disk in full). */
export async function foldAfterFailure(virsh: VirshRunner, host: HostFiles, name: string, target: string, log: Logger): Promise<void> {
  try {
    await foldAll(virsh, host, name, target, log, "snapshot failed");
  } catch (e) {
    if (!(e instanceof VirshError)) throw e;
    const st = await domainState(virsh, host.uri, name).catch(() => "unknown");
    if (st === "running" || st === "paused") throw e;
  }
}

// ------------------------------------------------------------------------ restore

export function isDiffSnapshot(m: Manifest): boolean {
  return m.files.some((f) => f.role === LAYOUT_ROLE);
}

/**
 * Rebuild a diff snapshot's files into `dir`: disk as qcow2 (`disk.qcow2`), memory as a
 * synthesized save image (`memory.sav`, XML not yet rewritten), `domain.xml`.
 */
export async function materializeDiff(repo: SnapshotRepository, vm: string, id: string, dir: string): Promise<{ disk: string; memory?: string; domainXml: string; layout: DiffLayout }> {
  const m = await repo.readManifest(vm, id);
  const files = new Map(m.files.map((f) => [f.role, f]));
  const need = (role: string) => {
    const f = files.get(role);
    if (!f) throw new Error(`snapshot ${vm}/${id} has no ${role}`);
    return f;
  };
  const layout = JSON.parse((await readSnapshotFile(repo, need(LAYOUT_ROLE))).toString("utf8")) as DiffLayout;
  if (layout.format !== LAYOUT_FORMAT || layout.version !== 1) throw new Error(`snapshot ${vm}/${id}: unknown layout ${layout.format} v${layout.version}`);
  fs.mkdirSync(dir, { recursive: true });
  const domainXml = path.join(dir, "domain.xml");
  fs.writeFileSync(domainXml, await readSnapshotFile(repo, need("domain.xml")));

  if (layout.disks.length !== 1) throw new Error(`snapshot ${vm}/${id}: ${layout.disks.length} disks (one is supported)`);
  const d = layout.disks[0];
  const region = layout.regions.find((r) => r.prefix === d.prefix);
  if (!region) throw new Error(`snapshot ${vm}/${id}: no region ${d.prefix}`);
  const raw = path.join(dir, "disk.raw");
  const fh = await fs.promises.open(raw, "w", 0o600);
  try {
    await fh.truncate(d.virtualSize);
    let off = 0;
    for await (const g of readRegion(repo.chunks, region, files)) {
      if (g.data) {
        let done = 0;
        while (done < g.data.length) done += (await fh.write(g.data, done, g.data.length - done, off + done)).bytesWritten;
      }
      off += g.length;
    }
    await fh.sync();
  } finally {
    await fh.close();
  }
  const disk = path.join(dir, "disk.qcow2");
  await runQemuImg(["convert", "-q", "-f", "raw", "-O", "qcow2", raw, disk]);
  fs.rmSync(raw, { force: true });

  let memory: string | undefined;
  if (layout.memory) {
    const mem = layout.memory;
    memory = path.join(dir, "memory.sav");
    const head = await readSnapshotFile(repo, need(mem.headRole));
    const tail = await readSnapshotFile(repo, need(mem.tailRole));
    const out = await fs.promises.open(memory, "w", 0o600);
    try {
      await writeSaveImage(out, head, tail, { ramSectionId: mem.ramSectionId, footers: mem.footers, blocks: mem.blocks }, (bi) => {
        const r = layout.regions.find((x) => x.prefix === mem.blocks[bi].prefix);
        if (!r) throw new Error(`snapshot ${vm}/${id}: no region ${mem.blocks[bi].prefix}`);
        return (async function* () {
          for await (const g of readRegion(repo.chunks, r, files)) yield { pages: g.length / PAGE_SIZE, data: g.data };
        })();
      });
      await out.sync();
    } finally {
      await out.close();
    }
  } else if (files.has("memory")) {
    memory = path.join(dir, "memory.sav");
    fs.writeFileSync(memory, await readSnapshotFile(repo, need("memory")));
  }
  return { disk, memory, domainXml, layout };
}
