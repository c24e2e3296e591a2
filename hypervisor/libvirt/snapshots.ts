/**
 * Snapshots of a running libvirt domain that survive its host, and restore on another host.
 *
 * Take (see ../../../shared/docs/lab-notes.md for the measurements behind these choices):
 *  1. `snapshot-create-as --memspec ...,snapshot=external --diskspec vda,snapshot=external
 *     --atomic --no-metadata`, NOT --live: a live external snapshot of a guest that rewrites
 *     memory fast may never converge (lab: 70 s and 23 GB for a 512 MiB guest), while the
 *     non-live one pauses the guest once, for about the time it takes to write its memory.
 *     The memory file is in libvirt's save-image format, so `virsh restore` can read it.
 *  2. The disk is now frozen at that moment: it became the read-only backing file of a fresh
 *     overlay that the guest writes to. The repository reads the frozen disk and the memory
 *     file (content-defined chunks: only what changed since the last snapshot is stored).
 *  3. `blockcommit --active --pivot` folds the overlay back into the disk, so the chain never
 *     grows, and the staging files are removed.
 * Restore: rebuild the files from the repository into the target host's pool, rewrite the
 * domain XML embedded in the memory image for that host (paths; name and UUID for a copy),
 * `virsh restore`, then define it so the domain is persistent there.
 */
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import type { SnapshotRecord, VmInfo } from "../backend";
import { PendingSnapshot, SnapshotRepository } from "../../repository/repository";
import type { VmWriterLease } from "../../repository/vmWriterLock";
import { HostFiles, isLocalUri, TransferSetting } from "./hostFiles";
import { VirshError, VirshRunner } from "./virsh";
import { primaryFileDisk, rewriteForHost } from "./domainXml";
import { defineXml, domainState, vmInfo } from "./domains";
import { rewriteSaveImageXml } from "./saveImage";
import { stripProtectionElement } from "./metadata";
import { poolDir, refreshPool, volumeNames, deleteVolume, listVolumes } from "./storage";
import {
  DiffLayout,
  defaultLog,
  diskChain,
  foldAfterFailure,
  foldBelowNewOverlay,
  isDiffSnapshot,
  loadPrevious,
  Logger,
  materializeDiff,
  repairBeforeTake,
  storeDiffSnapshot,
} from "./diffSnapshot";


export interface TakeSnapshotArgs {
  uri: string;
  name: string;
  pool: string;
  includeMemory: boolean;
  repository: string;
  /** How files move between the host's pool and the repository (default: in place for a local URI, streamed otherwise). */
  transfer?: TransferSetting;
  live?: "auto" | "never";
  /** How long to wait for another take of the same VM (another scheduler, agent, manual take) before refusing. Default 10 s. */
  writerWaitMs?: number;
  /**
   * "auto" (default): store what changed (diffSnapshot.ts) where it can run - this machine's own
   * libvirt (the pool is read in place) with qemu-img - else the whole-file path below.
   * "whole-files": always the whole-file path.
   */
  method?: "auto" | "whole-files";
  /** Where repairs and fallbacks are reported; default stderr. */
  log?: Logger;
}

/** The disk target (e.g. vda) and source path of the domain's first file-backed disk. */
export function primaryDisk(domainXml: string): { target: string; path: string } {
  const disk = primaryFileDisk(domainXml);
  if (!disk) throw new Error("the domain has no file-backed disk: a snapshot needs one (lab-notes: a domain with no disk cannot take one)");
  return disk;
}

/**
 * Live memory snapshots are used only below this measured dirty rate (MB/s). Measured on the
 * lab (512 MiB guest, 50 % filled): a guest dirtying ~2 MB/s was paused ~230-250 ms live vs
 * ~410 ms non-live; one dirtying ~100 MB/s was paused 590-870 ms live (the memory file grew by
 * half as pages were re-sent) vs ~320 ms non-live.
 */
export const LIVE_MAX_DIRTY_MBPS = 16;

/** If a live snapshot has not converged by then, the guest is paused so it finishes (ms). */
export const LIVE_DEADLINE_MS = 3000;

/** The guest's memory dirty rate (MB/s) from libvirt's page sampling (~1 s; no pause). Infinity when unknown. */
export async function dirtyRateMBps(virsh: VirshRunner, uri: string, name: string): Promise<number> {
  try {
    await virsh.run(uri, ["domdirtyrate-calc", name, "--seconds", "1"]);
    for (let i = 0; i < 20; i++) {
      const { stdout } = await virsh.run(uri, ["domstats", name, "--dirtyrate"]);
      const rate = /dirtyrate\.megabytes_per_second=(\d+)/.exec(stdout);
      if (/dirtyrate\.calc_status=2/.test(stdout) && rate) return Number(rate[1]);
      await new Promise((r) => setTimeout(r, 200));
    }
  } catch {
    /* older libvirt/QEMU: no measurement, so no live snapshot */
  }
  return Infinity;
}

/**
 * A live snapshot bounded in time: should the guest start dirtying memory faster than it can be
 * written (the lab saw one run 70 s and write 23 GB), it is paused at the deadline, which makes
 * the copy finish like a non-live one, and resumed afterwards.
 */
async function liveSnapshotWithDeadline(virsh: VirshRunner, uri: string, name: string, snapArgs: string[], pausedMarker?: string): Promise<void> {
  let paused: Promise<unknown> | undefined;
  const timer = setTimeout(() => {
    // The marker lets the next take resume the guest should this process die while it is paused.
    if (pausedMarker) fs.writeFileSync(pausedMarker, `${process.pid}\n`);
    paused = virsh.run(uri, ["suspend", name]).catch(() => undefined);
  }, LIVE_DEADLINE_MS);
  try {
    await virsh.run(uri, snapArgs, { timeoutMs: 3_600_000 });
  } finally {
    clearTimeout(timer);
    if (paused) {
      await paused;
      if ((await domainState(virsh, uri, name)) === "paused") await virsh.run(uri, ["resume", name]);
      if (pausedMarker) fs.rmSync(pausedMarker, { force: true });
    }
  }
}

export async function takeSnapshot(virsh: VirshRunner, args: TakeSnapshotArgs): Promise<SnapshotRecord> {
  // One writer per VM for the whole take: two takes at once break each other's overlays
  // (issue 14). A second one waits briefly, then refuses (VmWriterBusyError, exit 3) naming the holder.
  const repo = new SnapshotRepository(args.repository);
  const writer = await repo.acquireWriter(args.name, `take ${args.name} on ${args.uri}`, { waitMs: args.writerWaitMs ?? 10_000 });
  try {
    return await takeSnapshotAsWriter(virsh, args, repo, writer);
  } finally {
    await writer.release().catch((e: Error) => (args.log ?? defaultLog)(`releasing the writer lock of ${args.name} failed: ${e.message}`));
  }
}

async function takeSnapshotAsWriter(virsh: VirshRunner, args: TakeSnapshotArgs, repo: SnapshotRepository, writer: VmWriterLease): Promise<SnapshotRecord> {
  const { uri, name } = args;
  const started = Date.now();
  const log = args.log ?? defaultLog;
  // A take killed mid-capture leaves libvirt's job running (the guest paused until it ends), or
  // the guest paused by our live-snapshot deadline: finish / undo that first.
  await waitForDomainJob(virsh, uri, name, log);
  let state = await domainState(virsh, uri, name);
  if (state === "paused" && (await resumeIfWePaused(virsh, uri, name, args.pool, log))) state = await domainState(virsh, uri, name);
  if (state !== "running") throw new Error(`cannot snapshot ${name} on ${uri}: it is ${state}, a snapshot with memory needs a running VM`);
  const { stdout: liveXml } = await virsh.run(uri, ["dumpxml", name]);
  const disk = primaryDisk(liveXml);
  const host = new HostFiles(virsh, uri, args.pool, await poolDir(virsh, uri, args.pool), args.transfer);
  const whyNotDiff =
    args.method === "whole-files"
      ? "method whole-files was asked for"
      : host.mode !== "direct"
        ? `${uri} is not this machine (the pool is streamed, not read in place)`
        : await diskChain(virsh, uri, name, disk.target).then(
            () => undefined,
            (e: Error) => `the disk chain cannot be read in place (${e.message})`,
          );
  if (!whyNotDiff) return takeDiff(virsh, args, { started, liveXml, disk, host, log, repo, writer });
  const fallbackNote = `whole files: ${whyNotDiff}`;
  log(`${name}: snapshot stored as ${fallbackNote}`);
  // Staging names only need to be unique on this host; the repository assigns the snapshot id.
  const id = `${Date.now()}-${process.pid}`;
  const memFile = host.hostPath(volumeNames.memoryStaging(name, id));
  const overlay = host.hostPath(volumeNames.overlayStaging(name, id));

  const live = args.includeMemory && args.live === "auto" && (await dirtyRateMBps(virsh, uri, name)) <= LIVE_MAX_DIRTY_MBPS;
  const snapArgs = ["snapshot-create-as", name, "--name", `pv-${id}`, "--no-metadata", "--atomic"];
  if (args.includeMemory) snapArgs.push("--memspec", `file=${memFile},snapshot=external`);
  else snapArgs.push("--disk-only");
  snapArgs.push("--diskspec", `${disk.target},snapshot=external,file=${overlay}`);
  if (live) snapArgs.push("--live");

  const callStart = Date.now();
  if (live) await liveSnapshotWithDeadline(virsh, uri, name, snapArgs);
  else await virsh.run(uri, snapArgs, { timeoutMs: 3_600_000 });
  // Non-live: the guest is paused for the whole call (an upper bound of the pause). Live: the
  // pause is only the final switch-over, which libvirt does not report.
  const pauseMs = live ? undefined : Date.now() - callStart;
  const createdAt = new Date(live ? Date.now() : callStart);

  let committed: SnapshotRecord | undefined;
  const pending = await repo.begin(name, { host: uri, createdAt, startedAt: new Date(started), includesMemory: args.includeMemory, pauseMs, writer });
  const scratch = fs.mkdtempSync(path.join(os.tmpdir(), "pv-take-"));
  try {
    // The frozen disk is `disk.path` until the overlay is committed back below.
    await addHostFile(pending, host, `disk:${disk.target}`, disk.path);
    if (args.includeMemory) await addHostFile(pending, host, "memory", memFile);
    const domainXmlFile = path.join(scratch, "domain.xml");
    fs.writeFileSync(domainXmlFile, liveXml);
    await pending.addFile("domain.xml", domainXmlFile);
    committed = { ...(await pending.commit()), live, method: fallbackNote };
  } catch (e) {
    await pending.abort().catch(() => undefined);
    throw e;
  } finally {
    fs.rmSync(scratch, { recursive: true, force: true });
    try {
      await foldOverlay(virsh, host, name, disk.target, overlay);
    } catch (e) {
      // Once the manifest is renamed the snapshot exists: the take succeeded; say what failed after.
      if (!committed) throw e;
      log(`snapshot ${committed.id} of ${name} is committed; folding the overlay back afterwards failed: ${(e as Error).message}`);
    }
    if (args.includeMemory) await host.remove(memFile).catch(() => undefined);
    await refreshPool(virsh, uri, args.pool).catch(() => undefined);
  }
  return committed;
}

/** Wait (up to 60 s) for a libvirt job on the domain, e.g. a snapshot whose virsh client was killed. */
async function waitForDomainJob(virsh: VirshRunner, uri: string, name: string, log: Logger): Promise<void> {
  for (let i = 0; i < 120; i++) {
    const { stdout } = await virsh.run(uri, ["domjobinfo", name]).catch(() => ({ stdout: "" }));
    if (!/^Job type:\s+(Unbounded|Bounded)/m.test(stdout)) return;
    if (i === 0) log(`${name}: waiting for a libvirt job (an interrupted snapshot?) to finish`);
    await new Promise((r) => setTimeout(r, 500));
  }
}

/** Resume a guest that a killed take paused (its marker is in the pool); true when it did. */
async function resumeIfWePaused(virsh: VirshRunner, uri: string, name: string, pool: string, log: Logger): Promise<boolean> {
  let dir: string;
  try {
    dir = await poolDir(virsh, uri, pool);
  } catch {
    return false;
  }
  if (!isLocalUri(uri) || !fs.existsSync(dir)) return false;
  const markers = fs.readdirSync(dir).filter((f) => f.startsWith(`${name}.pvsnap-`) && f.endsWith(".paused"));
  if (!markers.length) return false;
  log(`${name}: paused by an interrupted snapshot (${markers.join(", ")}): resuming it`);
  await virsh.run(uri, ["resume", name]);
  for (const m of markers) fs.rmSync(path.join(dir, m), { force: true });
  return true;
}

/** The differential path (diffSnapshot.ts): same capture, memory as page groups, disk as changed clusters. */
async function takeDiff(
  virsh: VirshRunner,
  args: TakeSnapshotArgs,
  ctx: { started: number; liveXml: string; disk: { target: string; path: string }; host: HostFiles; log: Logger; repo: SnapshotRepository; writer: VmWriterLease },
): Promise<SnapshotRecord> {
  const { uri, name } = args;
  const { host, log, disk } = ctx;
  const { repo } = ctx;
  const prev = await loadPrevious(repo, name).catch(() => undefined);
  const kept = prev?.layout.disks.find((d) => d.target === disk.target)?.keptOverlay;
  const phases: Array<[string, number]> = [];
  let mark = Date.now();
  const phase = (what: string) => {
    const now = Date.now();
    phases.push([what, now - mark]);
    mark = now;
  };
  const { chain, notes } = await repairBeforeTake(virsh, host, repo, name, disk.target, kept, log);
  phase("repair");

  const id = `${Date.now()}-${process.pid}`;
  const memFile = args.includeMemory ? host.hostPath(volumeNames.memoryStaging(name, id)) : undefined;
  const overlay = host.hostPath(volumeNames.overlayStaging(name, id));
  const live = args.includeMemory && args.live === "auto" && (await dirtyRateMBps(virsh, uri, name)) <= LIVE_MAX_DIRTY_MBPS;
  const snapArgs = ["snapshot-create-as", name, "--name", `pv-${id}`, "--no-metadata", "--atomic"];
  if (memFile) snapArgs.push("--memspec", `file=${memFile},snapshot=external`);
  else snapArgs.push("--disk-only");
  snapArgs.push("--diskspec", `${disk.target},snapshot=external,file=${overlay}`);
  if (live) snapArgs.push("--live");
  const callStart = Date.now();
  try {
    if (live) await liveSnapshotWithDeadline(virsh, uri, name, snapArgs, host.hostPath(`${name}.pvsnap-${id}.paused`));
    else await virsh.run(uri, snapArgs, { timeoutMs: 3_600_000 });
  } catch (e) {
    // --atomic: libvirt left no overlay, but a half-written memory file may be there.
    if (memFile) await host.remove(memFile).catch(() => undefined);
    throw e;
  }
  const pauseMs = live ? undefined : Date.now() - callStart;
  const createdAt = new Date(live ? Date.now() : callStart);
  phase("capture");
  // The image our overlay froze is its backing file; if that is not the top seen before the
  // capture (something changed the chain meanwhile), the disk is read in full, not patched.
  const after = await diskChain(virsh, uri, name, disk.target);
  const frozenTop = after.top === overlay && after.chain.length > 1 ? after.chain[1] : chain.top;
  if (frozenTop !== chain.top) {
    notes.push(`the disk chain changed during the capture (${chain.top} -> ${frozenTop}): disk read in full`);
    log(`${name}: ${notes[notes.length - 1]}`);
  }
  const chainBefore = frozenTop === chain.top ? chain : { ...chain, top: "" };

  let committed: SnapshotRecord;
  const pending = await repo.begin(name, { host: uri, createdAt, startedAt: new Date(ctx.started), includesMemory: args.includeMemory, pauseMs, writer: ctx.writer });
  const scratch = fs.mkdtempSync(path.join(os.tmpdir(), "pv-take-"));
  try {
    const layout = await storeDiffSnapshot(repo, pending, { memFile, target: disk.target, frozenTop, newOverlay: overlay, chainBefore }, scratch, log, notes);
    const domainXmlFile = path.join(scratch, "domain.xml");
    fs.writeFileSync(domainXmlFile, ctx.liveXml);
    await pending.addFile("domain.xml", domainXmlFile);
    phase("store");
    committed = { ...(await pending.commit()), live, method: describeMethod(layout) };
    phase("commit+verify");
  } catch (e) {
    await pending.abort().catch(() => undefined);
    await foldAfterFailure(virsh, host, name, disk.target, log).catch((f: Error) => log(`${name}: folding the disk back after a failed snapshot failed too: ${f.message}`));
    throw e;
  } finally {
    fs.rmSync(scratch, { recursive: true, force: true });
    if (memFile) await host.remove(memFile).catch(() => undefined);
  }
  try {
    await foldBelowNewOverlay(virsh, host, name, disk.target);
  } catch (e) {
    // The snapshot is committed; the next take repairs a longer chain (its top is the kept overlay).
    log(`${name}: folding the previous overlay into the base failed (${(e as Error).message}); the next snapshot retries`);
  }
  await refreshPool(virsh, uri, args.pool).catch(() => undefined);
  phase("fold");
  log(`${name}: snapshot ${committed.id} stored ${committed.storedBytes} of ${committed.bytes} bytes; ${phases.map(([w, ms]) => `${w} ${ms} ms`).join(", ")}`);
  return committed;
}

function describeMethod(layout: DiffLayout): string {
  const m = layout.method;
  return [`memory: ${m.memory === "pages" ? "page groups" : m.memory === "file" ? "whole file" : "none"}`, `disk: ${m.disk}`, ...m.notes].join("; ");
}

async function addHostFile(pending: PendingSnapshot, host: HostFiles, role: string, hostPath: string): Promise<void> {
  const local = await host.fetch(hostPath);
  try {
    await pending.addFile(role, local.path);
  } finally {
    local.release();
  }
}

/** Merge the snapshot overlay back into the base disk and drop it, so the chain stays one file. */
async function foldOverlay(virsh: VirshRunner, host: HostFiles, name: string, target: string, overlay: string): Promise<void> {
  const uri = host.uri;
  try {
    await virsh.run(uri, ["blockcommit", name, target, "--active", "--pivot", "--wait"], { timeoutMs: 3_600_000 });
  } catch (e) {
    // The VM may have died meanwhile (host failure); its overlay is then debris left for cleanup.
    if (!(e instanceof VirshError)) throw e;
    const st = await domainState(virsh, uri, name).catch(() => "unknown");
    if (st === "running" || st === "paused") throw e;
  }
  await host.remove(overlay);
}

export interface RestoreArgs {
  snapshot: SnapshotRecord;
  uri: string;
  pool: string;
  repository: string;
  /** Name on the target host; default the snapshot's VM. A different name drops the UUID (a copy). */
  name?: string;
  transfer?: TransferSetting;
}

export async function restoreSnapshot(virsh: VirshRunner, args: RestoreArgs): Promise<VmInfo> {
  const { snapshot, uri } = args;
  if (!snapshot.complete) throw new Error(`snapshot ${snapshot.id} of ${snapshot.vm} is incomplete and cannot be restored`);
  const name = args.name ?? snapshot.vm;
  const existing = await domainState(virsh, uri, name);
  if (existing === "running" || existing === "paused") {
    throw new Error(`a domain named ${name} is already ${existing} on ${uri}; refusing to restore over it`);
  }
  const host = new HostFiles(virsh, uri, args.pool, await poolDir(virsh, uri, args.pool), args.transfer);
  const repo = new SnapshotRepository(args.repository);
  const staging = host.stagingDir(`${name}.pvrestore-${snapshot.id}`);
  const memVolume = `${name}.pvrestore-${snapshot.id}.mem`;
  try {
    let files: Record<string, string>;
    if (isDiffSnapshot(await repo.readManifest(snapshot.vm, snapshot.id))) {
      const d = await materializeDiff(repo, snapshot.vm, snapshot.id, staging);
      files = { "disk:vda": d.disk, "domain.xml": d.domainXml, ...(d.memory ? { memory: d.memory } : {}) };
    } else {
      files = await repo.materialize(snapshot.vm, snapshot.id, staging);
    }
    const diskRole = Object.keys(files).find((r) => r.startsWith("disk:"));
    if (!diskRole) throw new Error(`snapshot ${snapshot.id} has no disk`);
    const diskPath = host.hostPath(volumeNames.disk(name));
    const consoleLog = host.hostPath(volumeNames.consoleLog(name));
    const keepUuid = name === snapshot.vm;
    // A copy under another name (a drill) gets a new UUID and no protection record.
    const forTarget = (xml: string) => {
      const rewritten = rewriteForHost(xml, { name, uuid: keepUuid ? undefined : null, diskPath, consoleLog });
      return keepUuid ? rewritten : stripProtectionElement(rewritten);
    };
    if (existing === "shutoff") await virsh.run(uri, ["undefine", name, "--managed-save", "--snapshots-metadata"]).catch(() => undefined);
    await host.put(files[diskRole], volumeNames.disk(name));
    if (files.memory) {
      // Rewrite the XML inside the image (restore --xml refuses a new name or UUID, which a
      // drill's copy needs), then restore it as it now says.
      rewriteSaveImageXml(files.memory, forTarget);
      const memOnHost = await host.put(files.memory, memVolume);
      try {
        await virsh.run(uri, ["restore", memOnHost, "--running"], { timeoutMs: 3_600_000 });
      } finally {
        await host.remove(memOnHost).catch(() => undefined);
      }
      // `restore` leaves a transient domain: define it so it is persistent on its new host.
      const { stdout: liveXml } = await virsh.run(uri, ["dumpxml", name]);
      await defineXml(virsh, uri, liveXml);
    } else {
      await defineXml(virsh, uri, forTarget(fs.readFileSync(files["domain.xml"], "utf8")));
      await virsh.run(uri, ["start", name]);
    }
    await refreshPool(virsh, uri, args.pool).catch(() => undefined);
    const info = await vmInfo(virsh, uri, name);
    if (!info) throw new Error(`restored ${name} on ${uri} but libvirt does not list it`);
    return info;
  } finally {
    fs.rmSync(staging, { recursive: true, force: true });
  }
}

/** Remove a VM's own files from a host's pool: disk and console log. */
export async function deleteVmStorage(virsh: VirshRunner, uri: string, pool: string, name: string): Promise<void> {
  // The overlay kept between differential snapshots is the VM's disk too: it goes with the VM.
  for (const vol of await listVolumes(virsh, uri, pool)) {
    if (volumeNames.isSnapshotStaging(name, vol)) await virsh.run(uri, ["vol-delete", "--pool", pool, vol]);
  }
  await deleteVolume(virsh, uri, pool, volumeNames.disk(name));
  await deleteVolume(virsh, uri, pool, volumeNames.consoleLog(name));
}

