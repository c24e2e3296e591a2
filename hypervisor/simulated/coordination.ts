/**
 * A simulated coordination store with etcd's semantics that HA relies on: leases that expire
 * ttl after their last renewal (on the fake clock), keys attached to a lease deleted when it
 * expires, a global revision bumped by every write, and compare-and-swap on a key's revision.
 * client(viewpoint) is one process's connection: it fails while that host is powered off or
 * its link to the store is cut.
 */
import type { Coordination, StoredValue } from "../../core/ha/coordination";
import type { SimCluster } from "./cluster";

interface Entry {
  value: string;
  revision: number;
  lease?: string;
}

export class SimStore {
  private revision = 0;
  private nextLease = 1;
  private readonly entries = new Map<string, Entry>();
  private readonly leases = new Map<string, { ttlMs: number; expiresAt: number }>();
  /** Processes (manager ids) that are dead: their calls fail. */
  readonly dead = new Set<string>();

  constructor(private readonly cluster: SimCluster) {}

  /** Drop expired leases and their keys (as etcd does when a lease's TTL runs out). */
  expire(): string[] {
    const now = this.cluster.clock.now();
    const gone: string[] = [];
    for (const [id, l] of this.leases) {
      if (l.expiresAt > now) continue;
      this.leases.delete(id);
      for (const [k, e] of this.entries) if (e.lease === id) {
        this.entries.delete(k);
        gone.push(k);
      }
    }
    if (gone.length) this.revision++;
    return gone;
  }

  client(viewpoint: string): Coordination {
    const check = () => {
      if (this.dead.has(viewpoint)) throw new Error(`${viewpoint} is dead`);
      const h = this.cluster.hosts.get(viewpoint);
      if (h && (!h.power || !h.links.store)) throw new Error(`${viewpoint} cannot reach the store`);
      this.expire();
    };
    const get = (key: string): StoredValue | null => {
      const e = this.entries.get(key);
      return e ? { key, value: e.value, revision: String(e.revision) } : null;
    };
    return {
      grantLease: async (ttlMs) => {
        check();
        const id = `lease-${this.nextLease++}`;
        this.leases.set(id, { ttlMs, expiresAt: this.cluster.clock.now() + ttlMs });
        return id;
      },
      renewLease: async (id) => {
        check();
        const l = this.leases.get(id);
        if (!l) return false;
        l.expiresAt = this.cluster.clock.now() + l.ttlMs;
        return true;
      },
      revokeLease: async (id) => {
        check();
        const l = this.leases.get(id);
        if (l) l.expiresAt = this.cluster.clock.now();
        this.expire();
      },
      get: async (key) => {
        check();
        return get(key);
      },
      list: async (prefix) => {
        check();
        return [...this.entries.keys()].filter((k) => k.startsWith(prefix)).sort().map((k) => get(k)!);
      },
      compareAndSwap: async (key, expect, value, lease) => {
        check();
        const cur = this.entries.get(key);
        if (expect === null ? cur !== undefined : cur?.revision !== Number(expect)) return null;
        if (lease && !this.leases.has(lease)) throw new Error(`lease ${lease} not found`);
        this.revision++;
        this.entries.set(key, { value, revision: this.revision, lease });
        return String(this.revision);
      },
      deleteIf: async (key, expect) => {
        check();
        const cur = this.entries.get(key);
        if (!cur || cur.revision !== Number(expect)) return false;
        this.entries.delete(key);
        this.revision++;
        return true;
      },
      close: async () => undefined,
    };
  }
}
