/**
 * Files on a hypervisor host, in its storage pool. On this machine's own libvirt (a URI with no
 * host part) they are read and written in place; on another host they are streamed through the
 * libvirt connection itself (`vol-download` / `vol-upload`), so the management host needs no
 * mount of the hypervisors' pool directories.
 */
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import type { VirshRunner } from "./virsh";
import { deleteVolume, refreshPool } from "./storage";

export type TransferMode = "direct" | "stream";
export type TransferSetting = "auto" | TransferMode;

/** libvirt URIs without a host (qemu:///system, qemu:///session?socket=...) name this machine. */
export function isLocalUri(uri: string): boolean {
  return /^[a-z0-9+]+:\/\/\//i.test(uri) && !/^[a-z0-9]+\+(ssh|tcp|tls|libssh|libssh2):/i.test(uri);
}

export function transferModeFor(uri: string, setting: TransferSetting = "auto"): TransferMode {
  if (setting !== "auto") return setting;
  return isLocalUri(uri) ? "direct" : "stream";
}

/**
 * A file we put in a pool belongs to whoever owns the pool directory - the user the hypervisor
 * runs its guests as (a session daemon's user; root for the system daemon, whose DAC driver hands
 * disks to its qemu user itself) - readable and writable by that user only (0600). The issue
 * behind this: restored disks used to be world-writable (0666) and root-owned.
 */
export function giveToPoolOwner(file: string, poolDir: string): void {
  const owner = fs.statSync(poolDir);
  const st = fs.statSync(file);
  if (st.uid !== owner.uid || st.gid !== owner.gid) {
    try {
      fs.chownSync(file, owner.uid, owner.gid);
    } catch (e) {
      throw new Error(`cannot give ${file} to the owner of pool directory ${poolDir} (uid ${owner.uid}): ${(e as Error).message}; run as root or as that user`);
    }
  }
  fs.chmodSync(file, 0o600);
}

export class HostFiles {
  readonly mode: TransferMode;
  /** Files the daemon wrote since this object was made become volumes after one pool refresh. */
  private refreshed = false;

  constructor(
    private readonly virsh: VirshRunner,
    readonly uri: string,
    readonly pool: string,
    /** The pool's directory on the host. */
    readonly poolDir: string,
    setting: TransferSetting = "auto",
  ) {
    this.mode = transferModeFor(uri, setting);
  }

  /** Where a volume of the pool lives on the host. */
  hostPath(volName: string): string {
    return path.join(this.poolDir, volName);
  }

  /** A local path with the content of the host file at hostPath (in the pool); release() drops a streamed copy. */
  async fetch(hostPath: string): Promise<{ path: string; release: () => void }> {
    if (this.mode === "direct") return { path: hostPath, release: () => undefined };
    if (path.dirname(hostPath) !== this.poolDir) throw new Error(`${hostPath} is not in pool ${this.pool} (${this.poolDir}) on ${this.uri}: only pool volumes can be streamed`);
    if (!this.refreshed) {
      await refreshPool(this.virsh, this.uri, this.pool);
      this.refreshed = true;
    }
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "pv-fetch-"));
    const local = path.join(dir, path.basename(hostPath));
    await this.virsh.run(this.uri, ["vol-download", "--pool", this.pool, path.basename(hostPath), local], { timeoutMs: 3_600_000 });
    return { path: local, release: () => fs.rmSync(dir, { recursive: true, force: true }) };
  }

  /** A local folder to assemble files in before put() (inside the pool when direct, so put() is a rename). */
  stagingDir(tag: string): string {
    const dir = this.mode === "direct" ? path.join(this.poolDir, tag) : fs.mkdtempSync(path.join(os.tmpdir(), `pv-${tag}-`));
    fs.rmSync(dir, { recursive: true, force: true });
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    return dir;
  }

  /** Make localPath the pool volume volName (replacing one of that name); returns its path on the host. */
  async put(localPath: string, volName: string): Promise<string> {
    const dest = this.hostPath(volName);
    if (this.mode === "direct") {
      fs.renameSync(localPath, dest);
      giveToPoolOwner(dest, this.poolDir);
      return dest;
    }
    await deleteVolume(this.virsh, this.uri, this.pool, volName);
    const bytes = fs.statSync(localPath).size;
    await this.virsh.run(this.uri, ["vol-create-as", this.pool, volName, `${Math.max(bytes, 1)}b`, "--format", "raw"]);
    await this.virsh.run(this.uri, ["vol-upload", "--pool", this.pool, volName, localPath], { timeoutMs: 3_600_000 });
    return dest;
  }

  /** Remove a file the daemon or we put in the pool; no error if it is gone. */
  async remove(hostPath: string): Promise<void> {
    if (this.mode === "direct") fs.rmSync(hostPath, { force: true });
    else await deleteVolume(this.virsh, this.uri, this.pool, path.basename(hostPath));
  }
}
