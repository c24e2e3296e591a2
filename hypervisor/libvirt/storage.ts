/**
 * Storage on a libvirt host, through libvirt itself (so it works for remote URIs too): the pool
 * directory, volumes for disks, console logs and snapshot staging files.
 */
import type { VirshRunner } from "./virsh";
import { VirshError } from "./virsh";
import { poolTargetPath } from "./domainXml";

export const DEFAULT_POOL = "default";

/** The target directory of a dir-type pool. */
export async function poolDir(virsh: VirshRunner, uri: string, pool: string): Promise<string> {
  const { stdout } = await virsh.run(uri, ["pool-dumpxml", pool]);
  const dir = poolTargetPath(stdout);
  if (!dir) throw new Error(`storage pool ${pool} on ${uri} has no target path (only directory pools are supported)`);
  return dir;
}

export async function refreshPool(virsh: VirshRunner, uri: string, pool: string): Promise<void> {
  await virsh.run(uri, ["pool-refresh", pool]);
}

export async function volumeExists(virsh: VirshRunner, uri: string, pool: string, vol: string): Promise<boolean> {
  try {
    await virsh.run(uri, ["vol-info", "--pool", pool, vol]);
    return true;
  } catch (e) {
    if (e instanceof VirshError && /not found|no storage vol/i.test(e.stderr)) return false;
    throw e;
  }
}

/** Create an empty qcow2 volume (or fill it from a local qcow2 image) unless it exists; returns its path. */
export async function ensureDiskVolume(
  virsh: VirshRunner,
  uri: string,
  pool: string,
  vol: string,
  sizeMiB: number,
  image?: string,
): Promise<string> {
  if (!(await volumeExists(virsh, uri, pool, vol))) {
    await virsh.run(uri, ["vol-create-as", pool, vol, `${sizeMiB}M`, "--format", "qcow2"]);
    if (image) await virsh.run(uri, ["vol-upload", "--pool", pool, vol, image], { timeoutMs: 3_600_000 });
  }
  const { stdout } = await virsh.run(uri, ["vol-path", "--pool", pool, vol]);
  return stdout.trim();
}

/** Delete a volume if present (after a refresh, so files written by QEMU are seen). */
export async function deleteVolume(virsh: VirshRunner, uri: string, pool: string, vol: string): Promise<void> {
  await refreshPool(virsh, uri, pool);
  if (await volumeExists(virsh, uri, pool, vol)) await virsh.run(uri, ["vol-delete", "--pool", pool, vol]);
}

/**
 * The volume names in a pool. virsh 9.0's `vol-list` has no --name option: its table is read
 * (a header, a rule, then "name path" rows); our volume names never contain spaces.
 */
export async function listVolumes(virsh: VirshRunner, uri: string, pool: string): Promise<string[]> {
  await refreshPool(virsh, uri, pool);
  const { stdout } = await virsh.run(uri, ["vol-list", "--pool", pool]);
  return stdout
    .split("\n")
    .slice(2)
    .map((line) => line.trim().split(/\s+/)[0])
    .filter((name): name is string => !!name);
}

/** File names a VM owns in its pool. */
export const volumeNames = {
  disk: (vm: string) => `${vm}.qcow2`,
  consoleLog: (vm: string) => `${vm}.console.log`,
  memoryStaging: (vm: string, id: string) => `${vm}.pvsnap-${id}.mem`,
  overlayStaging: (vm: string, id: string) => `${vm}.pvsnap-${id}.overlay.qcow2`,
  /** Every snapshot staging file of the VM (overlays kept between differential snapshots, memory files, markers). */
  isSnapshotStaging: (vm: string, volume: string) => volume.startsWith(`${vm}.pvsnap-`),
};
