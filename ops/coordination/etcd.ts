/**
 * The coordination store on etcd (v3 API, `etcd3` client): the one module that imports etcd3.
 * It sits in ops/ beside its only users (agent, manager, their CLI commands); they depend on the
 * Coordination interface (core/ha/coordination), so tests swap in the simulated store.
 *
 * Every unary call carries a deadline (callTimeoutMs): an agent cut off from etcd must learn that
 * its renewal failed in time to fence, not after gRPC's default retries. Leases are renewed only
 * by explicit renewLease() calls (no background keepalive): the agent must know the send time of
 * each renewal that succeeded.
 */
import { Etcd3, EtcdLeaseInvalidError, Lease } from "etcd3";
import type { Coordination, StoredValue } from "../../core/ha/coordination";

export interface EtcdOptions {
  /** Client URLs, e.g. ["http://127.0.0.1:2379"]. */
  endpoints: string[];
  /** Deadline of each call, ms. Default 1000. */
  callTimeoutMs?: number;
}

export class EtcdCoordination implements Coordination {
  private readonly client: Etcd3;
  private readonly leases = new Map<string, Lease>();
  private readonly timeoutMs: number;

  constructor(opts: EtcdOptions) {
    const timeout = opts.callTimeoutMs ?? 1000;
    this.timeoutMs = timeout;
    this.client = new Etcd3({
      hosts: opts.endpoints,
      dialTimeout: timeout,
      defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + timeout }),
      // The client's default fault handling stays (per-member circuit breaker, 3 attempts): with
      // a 3-member cluster it moves calls off a dead member. The agent bounds each call itself.
    });
  }

  async grantLease(ttlMs: number): Promise<string> {
    // etcd leases are whole seconds; round up so a lease never expires before the caller expects.
    const lease = this.client.lease(Math.max(1, Math.ceil(ttlMs / 1000)), { autoKeepAlive: false });
    lease.on("lost", () => undefined); // reported through renewLease() instead
    const id = await lease.grant();
    this.leases.set(id, lease);
    return id;
  }

  async renewLease(leaseId: string): Promise<boolean> {
    const lease = this.leases.get(leaseId);
    if (!lease) return false;
    try {
      // Keepalive is a stream in etcd's API, which defaultCallOptions leaves without a deadline.
      await lease.keepaliveOnce({ deadline: Date.now() + this.timeoutMs });
      return true;
    } catch (e) {
      if (e instanceof EtcdLeaseInvalidError) {
        this.leases.delete(leaseId);
        return false;
      }
      throw e;
    }
  }

  async revokeLease(leaseId: string): Promise<void> {
    const lease = this.leases.get(leaseId);
    this.leases.delete(leaseId);
    if (lease) await lease.revoke();
  }

  async get(key: string): Promise<StoredValue | null> {
    const res = await this.client.get(key).exec();
    const kv = res.kvs[0];
    return kv ? { key, value: kv.value.toString(), revision: String(kv.mod_revision) } : null;
  }

  async list(prefix: string): Promise<StoredValue[]> {
    const res = await this.client.getAll().prefix(prefix).exec();
    return res.kvs.map((kv) => ({ key: kv.key.toString(), value: kv.value.toString(), revision: String(kv.mod_revision) }));
  }

  async compareAndSwap(key: string, expectRevision: string | null, value: string, leaseId?: string): Promise<string | null> {
    const put = this.client.put(key).value(value);
    if (leaseId) put.lease(leaseId);
    const txn = expectRevision === null ? this.client.if(key, "Create", "==", 0) : this.client.if(key, "Mod", "==", Number(expectRevision));
    const res = await txn.then(put).commit();
    return res.succeeded ? String(res.header.revision) : null;
  }

  async deleteIf(key: string, expectRevision: string): Promise<boolean> {
    const res = await this.client.if(key, "Mod", "==", Number(expectRevision)).then(this.client.delete().key(key)).commit();
    return res.succeeded;
  }

  async close(): Promise<void> {
    for (const lease of this.leases.values()) lease.release();
    this.client.close();
  }
}
