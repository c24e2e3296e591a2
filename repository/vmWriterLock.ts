/**
 * One snapshot writer per VM. A take is several hypervisor steps (external snapshot, overlay,
 * copy, blockcommit) around the repository write; two takes of one VM at once break each other
 * (issue 14: "could not find base image in chain", ENOENT on the overlay). The whole take holds
 * this lease; a second scheduler, agent or manual take waits (bounded) and then refuses with
 * VmWriterBusyError naming the holder.
 *
 * Kept behind a small interface so an etcd-based ownership (HA issue) can replace the file lock.
 */
import { RefusedError } from "../core/errors";
import { LockHandle, LockHeldError, LockInfo, LockManager } from "./lock";

export interface VmWriterHolder {
  pid: number;
  hostname: string;
  purpose: string;
  since: string;
}

export interface VmWriterLease {
  readonly vm: string;
  readonly holder: VmWriterHolder;
  /** Idempotent. */
  release(): Promise<void>;
}

export interface VmWriterLock {
  /** Wait up to waitMs for the current writer of vm; throws VmWriterBusyError after that. */
  acquire(vm: string, purpose: string, opts?: { waitMs?: number }): Promise<VmWriterLease>;
}

/** Another writer holds the VM: nothing was changed (exit code 3, "refused"). */
export class VmWriterBusyError extends RefusedError {
  constructor(readonly vm: string, readonly holder: VmWriterHolder, where: string) {
    super(
      `another snapshot writer holds VM ${vm}: "${holder.purpose}", pid ${holder.pid} on ${holder.hostname} since ${holder.since} ` +
        `(lock in ${where}; taken over automatically once that process is gone, or once its heartbeat has stopped for the stale period)`,
    );
    this.name = "VmWriterBusyError";
  }
}

function holderOf(info: LockInfo): VmWriterHolder {
  return { pid: info.pid, hostname: info.hostname, purpose: info.purpose, since: info.createdAt };
}

/** The VM writer lock as an owner lock file `locks/owner-vm-<vm>.lock` in the repository. */
export class FileVmWriterLock implements VmWriterLock {
  constructor(private readonly locks: LockManager) {}

  async acquire(vm: string, purpose: string, opts: { waitMs?: number } = {}): Promise<VmWriterLease> {
    let handle: LockHandle;
    try {
      handle = await this.locks.acquireOwner(`vm-${vm}`, purpose, { waitMs: opts.waitMs ?? 0 });
    } catch (e) {
      if (e instanceof LockHeldError) throw new VmWriterBusyError(vm, holderOf(e.holder), this.locks.dir);
      throw e;
    }
    return { vm, holder: holderOf(handle.info), release: () => handle.release() };
  }
}
