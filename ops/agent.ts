/**
 * `protected-vm agent`: one per hypervisor host. Each round (tick) it
 *   renews its host lease -> lists the protected VMs on its host -> reads their ownership ->
 *   asks the decision core (core/ha/decide) -> self-fences, destroys stale copies or claims
 *   unowned VMs -> publishes its host record (attached to the lease, so it vanishes with it).
 * In run() it also runs the snapshot loop (ops/scheduler) for the VMs it owns, with bounded
 * concurrency, and stops snapshotting while it has no lease.
 *
 * A hung agent cannot fence: on a real host, feed the Linux watchdog (/dev/watchdog) from the
 * tick so the host resets when ticks stop for longer than the fence safety - see the README.
 */
import type { Backend } from "../hypervisor/backend";
import type { Coordination } from "../core/ha/coordination";
import { DEFAULT_PREFIX, keys } from "../core/ha/coordination";
import { AgentAction, decideAgent, HostRecord, Owned, OwnerRecord } from "../core/ha/decide";
import type { VmInfo } from "../core/model";
import { Scheduler, SchedulerEvent } from "./scheduler";

export interface HaEvent {
  at: string;
  /** "agent/<host>" or "manager/<id>". */
  source: string;
  event: string;
  vm?: string;
  host?: string;
  [key: string]: unknown;
}

/** A running snapshot loop: stop(hard) ends it (hard: at once, mid-snapshot); done settles when it has ended. */
export interface SnapshotLoop {
  stop(hard: boolean): void;
  readonly done: Promise<void>;
}

export interface AgentOptions {
  host: string;
  backend: Backend;
  coordination: Coordination;
  prefix?: string;
  /** Host lease TTL, ms. Default 10000. */
  leaseTtlMs?: number;
  /** Destroy protected VMs this long before the lease can expire unless renewed. Default ttl/3. */
  fenceSafetyMs?: number;
  /** Round period, ms. Default ttl/5. */
  tickMs?: number;
  /** Memory this host offers to protected VMs (MiB); published so managers skip a full host. */
  capacityMiB?: number;
  now?: () => number;
  log?: (e: HaEvent) => void;
  /** Snapshot loop: at most this many snapshots at once on this host. Default 2. */
  snapshotConcurrency?: number;
  /** Passed to the scheduler (tests use small values). */
  cpuSampleMs?: number;
  discoverEveryMs?: number;
  onSchedulerEvent?: (e: SchedulerEvent) => void;
  /**
   * Starts the snapshot loop for the VMs this host owns (restarted when that set changes, stopped
   * hard on a fence). Default: an in-process Scheduler. The CLI runs it as a child process
   * instead: committing a snapshot hashes hundreds of MB, and in the agent's own event loop that
   * delayed lease renewals past the fence point on the loaded lab (a 52 s snapshot, measured).
   */
  startSnapshotLoop?: (vms: string[], onEvent: (e: SchedulerEvent) => void) => SnapshotLoop;
  /** Called with each round's lease state (metrics). */
  onLease?: (held: boolean, deadlineMs: number) => void;
}

/** Bound an I/O call so a stuck store or daemon cannot delay the fence check past its deadline. */
function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`${what} timed out after ${ms} ms`)), ms);
    p.then(
      (v) => {
        clearTimeout(t);
        resolve(v);
      },
      (e) => {
        clearTimeout(t);
        reject(e);
      },
    );
  });
}

export class Agent {
  readonly ttlMs: number;
  readonly fenceSafetyMs: number;
  readonly tickMs: number;
  private readonly prefix: string;
  private readonly now: () => number;
  private leaseId?: string;
  private leaseDeadlineMs: number;
  private readonly storeTimeoutMs: number;
  private leaseHeld = false;
  private readonly fenced = new Set<string>();
  /** VMs this host owns right now (snapshot loop gate). */
  private readonly owned = new Set<string>();
  private lastLocal: VmInfo[] = [];
  private stopped = false;
  private fencing = false;
  private loop?: { vms: string; handle: SnapshotLoop };

  constructor(private readonly opts: AgentOptions) {
    this.ttlMs = opts.leaseTtlMs ?? 10_000;
    this.fenceSafetyMs = opts.fenceSafetyMs ?? Math.round(this.ttlMs / 3);
    this.tickMs = opts.tickMs ?? Math.round(this.ttlMs / 5);
    if (this.fenceSafetyMs >= this.ttlMs) throw new Error(`fenceSafetyMs (${this.fenceSafetyMs}) must be below the lease TTL (${this.ttlMs})`);
    this.prefix = opts.prefix ?? DEFAULT_PREFIX;
    this.now = opts.now ?? Date.now;
    this.leaseDeadlineMs = this.now();
    this.storeTimeoutMs = Math.max(2000, this.tickMs);
  }

  private emit(event: string, fields: Record<string, unknown> = {}): void {
    this.opts.log?.({ at: new Date(this.now()).toISOString(), source: `agent/${this.opts.host}`, event, ...fields });
  }

  /** VMs this host owns now (lease held, ownership record names this host, not fenced). */
  ownedVms(): string[] {
    return [...this.owned];
  }

  private async renew(): Promise<void> {
    const { coordination } = this.opts;
    const sentAt = this.now();
    // A renewal slower than this counts as failed; several attempts fit before the fence point.
    const bound = Math.max(500, Math.floor((this.ttlMs - this.fenceSafetyMs) / 3));
    try {
      if (!this.leaseId) {
        this.leaseId = await withTimeout(coordination.grantLease(this.ttlMs), bound, "lease grant");
        this.emit("lease-granted", { lease: this.leaseId, ttlMs: this.ttlMs });
        this.leaseDeadlineMs = sentAt + this.ttlMs;
        this.leaseHeld = true;
        // The host record goes up with the lease, before any claim: a manager must never see a
        // VM owned by a host that has no record yet (it would count that host as lost).
        await this.publish(this.lastLocal.filter((v) => v.state === "running" || v.state === "paused"));
      } else if (await withTimeout(coordination.renewLease(this.leaseId), bound, "lease renewal")) {
        this.leaseDeadlineMs = sentAt + this.ttlMs;
        if (!this.leaseHeld) this.emit("lease-renewed", { lease: this.leaseId });
        this.leaseHeld = true;
      } else {
        this.emit("lease-lost", { lease: this.leaseId });
        this.leaseId = undefined;
        this.leaseHeld = false;
      }
    } catch (e) {
      if (this.leaseHeld) this.emit("lease-renewal-failed", { error: (e as Error).message });
      this.leaseHeld = false;
    }
    this.opts.onLease?.(this.leaseHeld, this.leaseDeadlineMs);
  }

  /** Every ownership record (one listing); null when the store cannot be read. */
  private async readOwnerRecords(): Promise<Owned[] | null> {
    if (!this.leaseHeld) return null;
    try {
      const all = await withTimeout(this.opts.coordination.list(keys.owners(this.prefix)), this.storeTimeoutMs, "ownership read");
      return all.map((kv) => ({ record: JSON.parse(kv.value) as OwnerRecord, revision: kv.revision }));
    } catch (e) {
      this.emit("store-unreachable", { error: (e as Error).message });
      return null;
    }
  }

  /** Ownership of the local VMs, the fenced ones and every VM recorded as this host's. */
  private ownersFor(records: Owned[] | null, vms: string[]): Record<string, Owned | null> | null {
    if (!records) return null;
    const out: Record<string, Owned | null> = {};
    for (const vm of [...vms, ...this.fenced]) out[vm] = null;
    for (const o of records) if (o.record.vm in out || o.record.host === this.opts.host) out[o.record.vm] = o;
    return out;
  }

  /** One round: lease, look, decide, act, publish (the simulation's step; run() renews on its own loop). */
  async tick(): Promise<AgentAction[]> {
    await this.renew();
    return this.reconcile();
  }

  /** Look, decide, act, publish - everything but the renewal. */
  async reconcile(): Promise<AgentAction[]> {
    const { backend, host } = this.opts;
    // Ownership first, then the local listing: a VM recorded here before the listing started is
    // in the listing unless it was really deleted.
    const records = await this.readOwnerRecords();
    let local: VmInfo[];
    let listed = true;
    try {
      // Generous: fencing does not wait for this (checkFence uses the last listing), and virsh
      // on a loaded 2-core lab host was measured taking over 2 s.
      local = await withTimeout(backend.listProtectedVms(host), 60_000, "listing local VMs");
      this.lastLocal = local;
    } catch (e) {
      // Our own daemon does not answer: decide on what we saw last (a fence still gets tried).
      this.emit("local-list-failed", { error: (e as Error).message });
      local = this.lastLocal;
      listed = false;
    }
    const isRunning = (v: VmInfo) => v.state === "running" || v.state === "paused";
    const owners = this.ownersFor(records, local.map((v) => v.name));
    const actions = decideAgent({
      now: this.now(),
      host,
      leaseDeadlineMs: this.leaseDeadlineMs,
      leaseHeld: this.leaseHeld,
      fenceSafetyMs: this.fenceSafetyMs,
      local: local.map((v) => ({ vm: v.name, running: isRunning(v) })),
      owners,
      fenced: [...this.fenced],
    });
    // A stale listing must not release or re-mark anything (it may miss a VM restored since).
    for (const a of actions) if (listed || (a.kind !== "release" && a.kind !== "mark")) await this.act(a, local);

    // Unchanged when the store could not be read this round (the lease still vouches for them).
    if (!this.leaseHeld) this.owned.clear();
    else if (owners) {
      this.owned.clear();
      // Not while a manager is still restoring and verifying it here ("recovering"): a snapshot
      // pauses the guest, which the lab saw fail the recovery's check that it runs.
      for (const v of local) {
        const o = owners[v.name]?.record;
        if (isRunning(v) && o?.host === host && o.state === "running" && !this.fenced.has(v.name)) this.owned.add(v.name);
      }
      for (const a of actions) if (a.kind === "claim") this.owned.add(a.vm);
    }
    for (const a of actions) if (a.kind === "self-fence" || a.kind === "destroy-stale") for (const vm of a.kind === "self-fence" ? a.vms : [a.vm]) this.owned.delete(vm);
    if (this.leaseHeld && this.leaseId) await this.publish(local.filter(isRunning));
    return actions;
  }

  private async act(a: AgentAction, local: VmInfo[]): Promise<void> {
    const { backend, host, coordination } = this.opts;
    switch (a.kind) {
      case "self-fence":
        this.emit("self-fence", { vms: a.vms, reason: a.reason });
        const decidedAt = this.now();
        for (const vm of a.vms) {
          try {
            await backend.stopVm({ name: vm, host }, { force: true });
            // Reported as fenced (so a manager may recover it at once) only once it is really stopped.
            this.fenced.add(vm);
            const v = this.lastLocal.find((x) => x.name === vm);
            if (v) v.state = "shutoff";
            this.emit("fenced", { vm, leaseDeadline: new Date(this.leaseDeadlineMs).toISOString(), fenceMs: this.now() - decidedAt, beforeDeadlineMs: this.leaseDeadlineMs - this.now() });
          } catch (e) {
            // Retried by the next fence check (every 100 ms). If it never succeeds, only the
            // watchdog or the storage lock (virtlockd) stands between this copy and a second one.
            this.emit("fence-failed", { vm, error: (e as Error).message });
          }
        }
        this.loop?.handle.stop(true);
        return;
      case "destroy-stale":
        this.emit("destroy-stale", { vm: a.vm, owner: a.owner, revision: a.revision });
        await backend.stopVm({ name: a.vm, host }, { force: true }).catch((e: Error) => this.emit("destroy-failed", { vm: a.vm, error: e.message }));
        return;
      case "forget-fenced":
        this.fenced.delete(a.vm);
        this.emit("fenced-vm-recovered-elsewhere", { vm: a.vm, owner: a.owner });
        return;
      case "mark": {
        const cur = (await coordination.get(keys.owner(this.prefix, a.vm)).catch(() => null)) ?? null;
        if (!cur || cur.revision !== a.revision) return;
        const record = { ...(JSON.parse(cur.value) as OwnerRecord), state: a.state, by: `agent/${host}`, since: new Date(this.now()).toISOString() };
        const rev = await coordination.compareAndSwap(keys.owner(this.prefix, a.vm), a.revision, JSON.stringify(record)).catch(() => null);
        if (rev) this.emit(a.state === "stopped" ? "marked-stopped" : "marked-running", { vm: a.vm });
        return;
      }
      case "release": {
        const ok = await coordination.deleteIf(keys.owner(this.prefix, a.vm), a.revision).catch(() => false);
        if (ok) this.emit("released", { vm: a.vm });
        return;
      }
      case "claim": {
        const info = local.find((v) => v.name === a.vm);
        const p = info?.protection;
        if (!info || !p) return;
        const record: OwnerRecord = {
          vm: a.vm, host, state: "running", hosts: [p.primaryHost, ...p.recoveryHosts.filter((h) => h !== p.primaryHost)],
          memoryMiB: info.memoryMiB, repository: p.policy.repository, by: `agent/${host}`, since: new Date(this.now()).toISOString(),
        };
        const rev = await coordination.compareAndSwap(keys.owner(this.prefix, a.vm), null, JSON.stringify(record)).catch(() => null);
        this.emit(rev ? "claimed" : "claim-lost", { vm: a.vm, revision: rev });
        return;
      }
    }
  }

  private async publish(running: VmInfo[]): Promise<void> {
    const used = running.reduce((s, v) => s + v.memoryMiB, 0);
    const record: HostRecord = {
      host: this.opts.host,
      agent: `agent/${this.opts.host}`,
      running: running.map((v) => v.name).sort(),
      fenced: [...this.fenced].sort(),
      freeMemoryMiB: this.opts.capacityMiB === undefined ? undefined : this.opts.capacityMiB - used,
      at: new Date(this.now()).toISOString(),
    };
    const key = keys.host(this.prefix, this.opts.host);
    try {
      const cur = await this.opts.coordination.get(key);
      await this.opts.coordination.compareAndSwap(key, cur?.revision ?? null, JSON.stringify(record), this.leaseId);
    } catch (e) {
      this.emit("publish-failed", { error: (e as Error).message });
    }
  }

  /**
   * The fence check on its own: decides from the last local listing alone, so a round stuck in a
   * slow daemon or store call cannot carry the agent past its fence point.
   */
  async checkFence(): Promise<void> {
    if (this.fencing) return;
    const running = this.lastLocal.filter((v) => (v.state === "running" || v.state === "paused") && !this.fenced.has(v.name));
    const actions = decideAgent({
      now: this.now(), host: this.opts.host, leaseDeadlineMs: this.leaseDeadlineMs, leaseHeld: this.leaseHeld, fenceSafetyMs: this.fenceSafetyMs,
      local: running.map((v) => ({ vm: v.name, running: true })), owners: null, fenced: [...this.fenced],
    });
    this.fencing = true;
    try {
      for (const a of actions) await this.act(a, this.lastLocal);
    } finally {
      this.fencing = false;
    }
  }

  private startLoop(vms: string[]): SnapshotLoop {
    const onEvent = this.opts.onSchedulerEvent ?? (() => undefined);
    if (this.opts.startSnapshotLoop) return this.opts.startSnapshotLoop(vms, onEvent);
    const scheduler = new Scheduler({
      backend: this.opts.backend,
      hosts: [this.opts.host],
      vmNames: vms,
      concurrency: this.opts.snapshotConcurrency ?? 2,
      mayRun: () => this.leaseHeld,
      cpuSampleMs: this.opts.cpuSampleMs,
      discoverEveryMs: this.opts.discoverEveryMs ?? 5000,
      log: onEvent,
    });
    return { stop: () => scheduler.stop(), done: scheduler.run() };
  }

  /** Keep one snapshot loop running for exactly the VMs this host owns while it holds its lease. */
  private syncLoop(): void {
    const want = this.leaseHeld ? [...this.owned].sort().join(",") : "";
    if (this.loop && this.loop.vms !== want) {
      this.loop.handle.stop(false);
      this.loop = undefined;
    }
    if (!this.loop && want) {
      const handle = this.startLoop(want.split(","));
      const entry = { vms: want, handle };
      this.loop = entry;
      handle.done
        .catch((e: Error) => this.emit("snapshot-loop-failed", { error: e.message }))
        .finally(() => {
          if (this.loop === entry) this.loop = undefined;
        });
    }
  }

  /** Run rounds and the snapshot loop until stop(). */
  async run(): Promise<void> {
    const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
    this.emit("started", { ttlMs: this.ttlMs, fenceSafetyMs: this.fenceSafetyMs, tickMs: this.tickMs });
    // Every 100 ms, independent of the round (see checkFence).
    const fenceTimer = setInterval(() => void this.checkFence().catch(() => undefined), 100);
    // Renewals on their own loop: a round slowed by the hypervisor (virsh under load takes
    // seconds) must not delay them, or the agent fences itself for nothing.
    const renewEveryMs = Math.max(100, Math.min(this.tickMs, Math.floor((this.ttlMs - this.fenceSafetyMs) / 3)));
    const renewals = (async () => {
      while (!this.stopped) {
        const t0 = this.now();
        await this.renew();
        if (!this.leaseHeld) this.syncLoop();
        await sleep(Math.max(0, renewEveryMs - (this.now() - t0)));
      }
    })();
    while (!this.stopped) {
      const t0 = this.now();
      await this.reconcile().catch((e: Error) => this.emit("tick-failed", { error: e.message }));
      this.syncLoop();
      await sleep(Math.max(0, this.tickMs - (this.now() - t0)));
    }
    clearInterval(fenceTimer);
    await renewals;
    const loop = this.loop;
    loop?.handle.stop(false);
    await loop?.handle.done.catch(() => undefined);
    // The lease is left to expire, not revoked: revoking would declare the host failed at once
    // while its VMs still run. Stop or move the VMs before stopping their agent for good.
    this.emit("stopped");
  }

  stop(): void {
    this.stopped = true;
  }
}
