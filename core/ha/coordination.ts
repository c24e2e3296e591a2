/**
 * The coordination store the HA agents and managers share (etcd in production, a simulated store
 * in tests): leases that expire unless renewed, and keys written only by compare-and-swap on their
 * revision. Types only - the etcd implementation is ops/coordination/etcd.ts, the simulated one
 * hypervisor/simulated/coordination.ts.
 *
 * Key layout (all under one prefix, default "/protected-vm/"):
 *   hosts/<host>    an agent's host record, attached to its host lease (gone when the lease expires)
 *   owners/<vm>     the VM's ownership record; its revision is the fencing token for the next change
 *   leader          the leading manager's id, attached to that manager's lease
 */

/** One key as read back: value and the revision of its last write (etcd's mod_revision). */
export interface StoredValue {
  key: string;
  value: string;
  /** Revision of the last write to this key: pass it to compareAndSwap to change it safely. */
  revision: string;
}

export interface Coordination {
  /** Grant a lease that expires ttlMs after the last renewal (etcd rounds up to whole seconds). */
  grantLease(ttlMs: number): Promise<string>;
  /** Renew the lease once; false when the store says it is gone (expired or revoked). Throws when unreachable. */
  renewLease(leaseId: string): Promise<boolean>;
  revokeLease(leaseId: string): Promise<void>;
  get(key: string): Promise<StoredValue | null>;
  /** Every key starting with prefix. */
  list(prefix: string): Promise<StoredValue[]>;
  /**
   * Write value when the key's current revision is expectRevision (null: the key must not exist).
   * Returns the new revision, or null when the comparison failed (someone else wrote first).
   * With leaseId the key is deleted when that lease expires.
   */
  compareAndSwap(key: string, expectRevision: string | null, value: string, leaseId?: string): Promise<string | null>;
  /** Delete the key when its revision is expectRevision; false when it changed. */
  deleteIf(key: string, expectRevision: string): Promise<boolean>;
  close(): Promise<void>;
}

export const DEFAULT_PREFIX = "/protected-vm/";

export const keys = {
  host: (prefix: string, host: string) => `${prefix}hosts/${encodeURIComponent(host)}`,
  hosts: (prefix: string) => `${prefix}hosts/`,
  owner: (prefix: string, vm: string) => `${prefix}owners/${encodeURIComponent(vm)}`,
  owners: (prefix: string) => `${prefix}owners/`,
  leader: (prefix: string) => `${prefix}leader`,
  hostOf: (prefix: string, key: string) => decodeURIComponent(key.slice(`${prefix}hosts/`.length)),
};
