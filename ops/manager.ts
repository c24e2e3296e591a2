/**
 * `protected-vm manager`: any number run; one leads (the leader key, attached to its lease, is
 * created only when absent). Each round the leader
 *   reads host records and ownership records -> notes when each host's lease vanished ->
 *   lists snapshots of the VMs that need them -> asks the decision core (core/ha/decide) ->
 *   recovers (claim by compare-and-swap on the ownership revision, ops/recover, confirm by a
 *   second compare-and-swap), confirms recoveries another leader left unconfirmed, logs waits
 *   and refusals.
 */
import type { Backend } from "../hypervisor/backend";
import type { Coordination } from "../core/ha/coordination";
import { DEFAULT_PREFIX, keys } from "../core/ha/coordination";
import {
  decideManager, HostRecord, HostView, ManagerAction, Owned, OwnerRecord, SnapshotFact, trackLeaseLoss,
} from "../core/ha/decide";
import { recover, RecoveryRefused } from "./recover";
import type { HaEvent } from "./agent";

export interface RecoveryOutcome {
  vm: string;
  from: string;
  to: string;
  outcome: "recovered" | "refused" | "failed" | "lost-race";
  snapshotId?: string;
  /** From the moment the host's lease was seen missing to the guest verified running (ms). */
  sinceLeaseLostMs?: number;
  /** The restore itself (ms). */
  restoreMs?: number;
  detail?: string;
}

export interface ManagerOptions {
  id: string;
  backend: Backend;
  coordination: Coordination;
  prefix?: string;
  /** Wait this long after a host's lease vanished before recovering its VMs. Default 5000. */
  fencingMarginMs?: number;
  /** Leader lease TTL, ms. Default 10000. */
  leaseTtlMs?: number;
  /** Round period, ms. Default 1000. */
  tickMs?: number;
  /** How long a restored guest must keep running to count as recovered. Default 1000. */
  verifyMs?: number;
  now?: () => number;
  log?: (e: HaEvent) => void;
  onRecovery?: (r: RecoveryOutcome) => void;
  /** Called when this manager becomes or stops being the leader (metrics). */
  onLeadership?: (leading: boolean) => void;
  /** Called once per round with each known host's lease state (metrics). */
  onHosts?: (hosts: HostView[]) => void;
  /** Tests: called right after a claim, before the restore (to kill a leader mid-recovery). */
  afterClaim?: (vm: string) => Promise<void> | void;
}

export class Manager {
  private readonly prefix: string;
  private readonly now: () => number;
  private leaseId?: string;
  private leader = false;
  private lostSince: Record<string, number> = {};
  private readonly knownHosts = new Set<string>();
  private readonly inFlight = new Map<string, Promise<void>>();
  private readonly corrupt = new Set<string>();
  /** Last logged wait/refusal per VM, so a repeated decision is logged once. */
  private readonly lastNote = new Map<string, string>();
  private stopped = false;
  private dead = false;

  constructor(private readonly opts: ManagerOptions) {
    this.prefix = opts.prefix ?? DEFAULT_PREFIX;
    this.now = opts.now ?? Date.now;
  }

  get id(): string {
    return this.opts.id;
  }

  get isLeader(): boolean {
    return this.leader;
  }

  private emit(event: string, fields: Record<string, unknown> = {}): void {
    if (this.dead) return;
    this.opts.log?.({ at: new Date(this.now()).toISOString(), source: `manager/${this.opts.id}`, event, ...fields });
  }

  /** Tests: the process died here - nothing more it does reaches the store, the hosts or the log. */
  kill(): void {
    this.dead = true;
    this.stopped = true;
  }

  private async lead(): Promise<boolean> {
    const c = this.opts.coordination;
    const ttl = this.opts.leaseTtlMs ?? 10_000;
    if (this.leaseId && !(await c.renewLease(this.leaseId))) this.leaseId = undefined;
    if (!this.leaseId) this.leaseId = await c.grantLease(ttl);
    const key = keys.leader(this.prefix);
    const cur = await c.get(key);
    let mine = cur?.value === this.opts.id;
    if (!cur) mine = (await c.compareAndSwap(key, null, this.opts.id, this.leaseId)) !== null;
    if (mine !== this.leader) {
      this.emit(mine ? "elected" : "not-leader", { leader: mine ? this.opts.id : cur?.value });
      this.opts.onLeadership?.(mine);
    }
    this.leader = mine;
    return mine;
  }

  /** One round. Returns the decisions taken (the recoveries run in the background; see settle()). */
  async tick(): Promise<ManagerAction[]> {
    if (this.dead) return [];
    try {
      if (!(await this.lead())) return [];
    } catch (e) {
      if (this.leader) {
        this.emit("leadership-lost", { error: (e as Error).message });
        this.opts.onLeadership?.(false);
      }
      this.leader = false;
      return [];
    }
    const c = this.opts.coordination;
    const hostRecords = new Map<string, HostRecord>();
    for (const kv of await c.list(keys.hosts(this.prefix))) {
      const rec = JSON.parse(kv.value) as HostRecord;
      hostRecords.set(rec.host, rec);
    }
    const owners: Owned[] = (await c.list(keys.owners(this.prefix))).map((kv) => ({ record: JSON.parse(kv.value) as OwnerRecord, revision: kv.revision }));
    for (const h of hostRecords.keys()) this.knownHosts.add(h);
    for (const o of owners) {
      this.knownHosts.add(o.record.host);
      for (const h of o.record.hosts) this.knownHosts.add(h);
    }
    const now = this.now();
    this.lostSince = trackLeaseLoss(this.lostSince, this.knownHosts, new Set(hostRecords.keys()), now);
    const hosts: Record<string, HostView> = {};
    for (const h of this.knownHosts) hosts[h] = { host: h, leaseHeld: hostRecords.has(h), lostSinceMs: this.lostSince[h], record: hostRecords.get(h) };
    this.opts.onHosts?.(Object.values(hosts));

    // Snapshots only for VMs that may have to move (listing reads the repository).
    const snapshots: Record<string, SnapshotFact[]> = {};
    for (const o of owners) {
      const h = hosts[o.record.host];
      const mayMove = !h.leaseHeld || o.record.state === "recovering" || (h.record?.fenced.includes(o.record.vm) ?? false);
      if (!mayMove || this.inFlight.has(o.record.vm)) continue;
      try {
        snapshots[o.record.vm] = (await this.opts.backend.listSnapshots(o.record.vm, o.record.repository)).map((s) => ({
          id: s.id, createdAtMs: Date.parse(s.createdAt), complete: s.complete, corrupt: this.corrupt.has(s.id),
        }));
      } catch (e) {
        this.emit("snapshot-list-failed", { vm: o.record.vm, error: (e as Error).message });
      }
    }
    const actions = decideManager({
      now, fencingMarginMs: this.opts.fencingMarginMs ?? 5000, hosts, owners, snapshots, inFlight: [...this.inFlight.keys()],
    });
    for (const a of actions) {
      const owned = owners.find((o) => o.record.vm === a.vm)!;
      if (a.kind === "recover") {
        this.lastNote.delete(a.vm);
        const job = this.recoverOne(a, owned, this.lostSince[a.from]).finally(() => this.inFlight.delete(a.vm));
        this.inFlight.set(a.vm, job);
      } else if (a.kind === "confirm") {
        const rev = await c.compareAndSwap(keys.owner(this.prefix, a.vm), a.expectRevision, JSON.stringify({ ...owned.record, state: "running", by: `manager/${this.opts.id}`, since: new Date(now).toISOString() }));
        this.emit(rev ? "confirmed" : "confirm-lost-race", { vm: a.vm, host: a.host });
      } else if (a.kind === "wait" || a.kind === "refuse") {
        const note = `${a.kind}:${a.reason}`;
        if (this.lastNote.get(a.vm) !== note && a.reason !== "recovery in progress") this.emit(a.kind, { vm: a.vm, reason: a.reason, untilMs: a.kind === "wait" ? a.untilMs : undefined });
        this.lastNote.set(a.vm, note);
      }
    }
    return actions;
  }

  private async recoverOne(a: Extract<ManagerAction, { kind: "recover" }>, owned: Owned, lostAt: number | undefined): Promise<void> {
    const c = this.opts.coordination;
    const key = keys.owner(this.prefix, a.vm);
    const claim: OwnerRecord = {
      ...owned.record, host: a.to, state: "recovering", from: a.from, snapshotId: a.snapshotId,
      by: `manager/${this.opts.id}`, since: new Date(this.now()).toISOString(),
    };
    const rev = await c.compareAndSwap(key, a.expectRevision, JSON.stringify(claim));
    const base = { vm: a.vm, from: a.from, to: a.to, snapshotId: a.snapshotId };
    if (!rev) {
      this.emit("claim-lost-race", { vm: a.vm, expectRevision: a.expectRevision });
      this.opts.onRecovery?.({ ...base, outcome: "lost-race" });
      return;
    }
    this.emit("claimed", { ...base, revision: rev, reason: a.reason, snapshotAgeMs: a.snapshotAgeMs });
    await this.opts.afterClaim?.(a.vm);
    if (this.dead) return;
    // The claim fenced other managers; re-check leadership so a deposed leader stops before restoring.
    const leader = await c.get(keys.leader(this.prefix));
    if (leader?.value !== this.opts.id) {
      this.emit("deposed-before-restore", { vm: a.vm });
      return;
    }
    const t0 = this.now();
    try {
      const report = await recover(this.opts.backend, a.vm, {
        repository: owned.record.repository, hosts: [a.from, a.to], to: a.to, snapshotId: a.snapshotId, verifyMs: this.opts.verifyMs ?? 1000,
      });
      if (this.dead) return;
      const done = await c.compareAndSwap(key, rev, JSON.stringify({ ...claim, state: "running", since: new Date(this.now()).toISOString() }));
      const restoreMs = this.now() - t0;
      const sinceLeaseLostMs = lostAt === undefined ? undefined : this.now() - lostAt;
      this.emit("recovered", { ...base, restoreMs, sinceLeaseLostMs, alreadyRecovered: report.alreadyRecovered, confirmed: done !== null });
      this.opts.onRecovery?.({ ...base, outcome: "recovered", restoreMs, sinceLeaseLostMs });
    } catch (e) {
      if (this.dead) return;
      const msg = (e as Error).message;
      // A snapshot that fails verification is skipped from now on; the next round picks an older one.
      if (e instanceof RecoveryRefused && /does not exist or is incomplete|verif/.test(msg)) this.corrupt.add(a.snapshotId);
      const outcome = e instanceof RecoveryRefused ? "refused" : "failed";
      this.emit(`recovery-${outcome}`, { ...base, error: msg });
      this.opts.onRecovery?.({ ...base, outcome, detail: msg });
    }
  }

  /** Wait for the recoveries started so far. */
  async settle(): Promise<void> {
    await Promise.all(this.inFlight.values());
  }

  async run(): Promise<void> {
    const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
    this.emit("started", { fencingMarginMs: this.opts.fencingMarginMs ?? 5000 });
    while (!this.stopped) {
      const t0 = this.now();
      await this.tick().catch((e: Error) => this.emit("tick-failed", { error: e.message }));
      await sleep(Math.max(0, (this.opts.tickMs ?? 1000) - (this.now() - t0)));
    }
    await this.settle();
    if (this.leaseId && !this.dead) await this.opts.coordination.revokeLease(this.leaseId).catch(() => undefined);
    this.emit("stopped");
  }

  stop(): void {
    this.stopped = true;
  }
}
