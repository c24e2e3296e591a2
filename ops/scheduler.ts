/**
 * The companion scheduler: between deployments, it finds every protected VM on the hosts it
 * watches (from the record stored in each VM), and for each runs the paper's loop -
 *   read CPU usage -> pick the interval (short when idle, long when busy) -> wait ->
 *   snapshot (memory + disk, committed to the repository) -> apply retention -> again.
 * It reports one structured event per step to an injected sink (the CLI writes each as a JSON
 * line through pino) and can write an RPO status file for monitoring.
 */
import * as fs from "fs";
import * as path from "path";
import type { Backend } from "../hypervisor/backend";
import type { HostRef, SnapshotRecord } from "../core/model";
import type { ProtectionRecord } from "../core/policy";
import { nextIntervalSeconds } from "../core/interval";
import { pruneSnapshots } from "./prune";

export interface SchedulerEvent {
  event: "discovered" | "snapshot" | "snapshot-failed" | "snapshot-skipped" | "pruned" | "prune-failed" | "rpo" | "host-down" | "vm-gone" | "stopped";
  at: string;
  vm?: string;
  host?: string;
  [key: string]: unknown;
}

/** Where the scheduler's events go (the CLI: one JSON line each, cli/log.ts; bench: an array). */
export type SchedulerEventSink = (e: SchedulerEvent) => void;

export interface SchedulerOptions {
  backend: Backend;
  /** Hosts to watch; a protected VM is found on whichever of them runs it. */
  hosts: HostRef[];
  /** Where each event goes; default: nowhere (ops/ does no output of its own). */
  log?: SchedulerEventSink;
  /** CPU sample length, ms. Default 1000. */
  cpuSampleMs?: number;
  /** How often to look for new or moved VMs, ms. Default 15000. */
  discoverEveryMs?: number;
  /** Write per-VM RPO status here (JSON), for monitoring. */
  statusFile?: string;
  /** Stop after this many snapshots in total (tests, drills). */
  maxSnapshots?: number;
  /** Only these VMs (default: every protected VM on the hosts). */
  vmNames?: string[];
  /** Snapshots taken at once (default 1). More than one keeps a slow VM from starving the others. */
  concurrency?: number;
  /** Asked before each snapshot; false skips the VM this time (the HA agent: only VMs it owns while it holds its lease). */
  mayRun?: (vm: string) => boolean;
}

interface Tracked {
  name: string;
  host: HostRef;
  protection: ProtectionRecord;
  dueAt: number;
  lastSnapshot?: SnapshotRecord;
  lastError?: string;
  /** Snapshots failed in a row (0 after a success): the retry backs off with it. */
  failures?: number;
}

/**
 * When to try again after `failures` failed snapshots in a row (seconds): the policy's interval
 * while things work, then doubling up to 10 x maxIntervalSeconds - a VM that cannot be
 * snapshotted (deleted, broken) used to be retried every minIntervalSeconds forever.
 */
export function retryDelaySeconds(failures: number, intervalSeconds: number, policy: { maxIntervalSeconds: number }): number {
  if (failures <= 0) return intervalSeconds;
  return Math.min(intervalSeconds * 2 ** failures, Math.max(intervalSeconds, policy.maxIntervalSeconds * 10));
}

export interface VmStatus {
  vm: string;
  host: HostRef;
  newestSnapshotId: string | null;
  newestSnapshotAt: string | null;
  /** Age of the newest complete snapshot: the state a failure now would lose. */
  rpoSeconds: number | null;
  nextSnapshotInSeconds: number;
  lastError: string | null;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export class Scheduler {
  private readonly vms = new Map<string, Tracked>();
  private stopped = false;
  private snapshotsTaken = 0;
  private lastDiscovery = 0;
  private readonly log: SchedulerEventSink;

  constructor(private readonly opts: SchedulerOptions) {
    this.log = opts.log ?? (() => undefined);
  }

  stop(): void {
    this.stopped = true;
  }

  private emit(event: SchedulerEvent["event"], fields: Record<string, unknown>): void {
    this.log({ event, at: new Date().toISOString(), ...fields });
  }

  /** Find protected VMs on every live host; notice VMs that moved (after a recovery). */
  async discover(): Promise<void> {
    this.lastDiscovery = Date.now();
    for (const host of this.opts.hosts) {
      if (!(await this.opts.backend.hostAlive(host))) {
        this.emit("host-down", { host });
        continue;
      }
      for (const vm of await this.opts.backend.listProtectedVms(host)) {
        if (!vm.protection || (vm.state !== "running" && vm.state !== "paused")) continue;
        if (this.opts.vmNames && !this.opts.vmNames.includes(vm.name)) continue;
        const known = this.vms.get(vm.name);
        if (known && known.host === vm.host) {
          known.protection = vm.protection;
          continue;
        }
        this.vms.set(vm.name, { name: vm.name, host: vm.host, protection: vm.protection, dueAt: Date.now(), lastSnapshot: known?.lastSnapshot, failures: 0 });
        this.emit("discovered", { vm: vm.name, host: vm.host, policy: vm.protection.policy });
      }
    }
  }

  /** Snapshot one VM now, prune, and schedule its next snapshot from its CPU usage. */
  async snapshotVm(t: Tracked): Promise<SnapshotRecord | undefined> {
    const { backend } = this.opts;
    const policy = t.protection.policy;
    const ref = { name: t.name, host: t.host };
    const previousAt = t.lastSnapshot?.createdAt ?? (await backend.listSnapshots(t.name, policy.repository)).find((s) => s.complete)?.createdAt;
    let record: SnapshotRecord | undefined;
    try {
      record = await backend.takeSnapshot(ref, { includeMemory: policy.includeMemory, repository: policy.repository, live: policy.liveSnapshot ?? "auto" });
      t.lastSnapshot = record;
      t.lastError = undefined;
      t.failures = 0;
      this.snapshotsTaken++;
      this.emit("snapshot", {
        vm: t.name,
        host: t.host,
        id: record.id,
        createdAt: record.createdAt,
        bytes: record.bytes,
        storedBytes: record.storedBytes,
        durationMs: record.durationMs,
        pauseMs: record.pauseMs,
        live: record.live ?? false,
        previousAgeSeconds: previousAt ? (Date.parse(record.createdAt) - Date.parse(previousAt)) / 1000 : null,
      });
    } catch (e) {
      if ((e as Error).name === "VmWriterBusyError") {
        // Another scheduler/agent/manual take is snapshotting this VM right now: nothing failed.
        this.emit("snapshot-skipped", { vm: t.name, host: t.host, reason: (e as Error).message });
      } else {
        t.lastError = (e as Error).message;
        t.failures = (t.failures ?? 0) + 1;
        this.emit("snapshot-failed", { vm: t.name, host: t.host, error: t.lastError, failuresInARow: t.failures });
        if (await this.goneEverywhere(t.name)) {
          // Deleted (pulumi destroy, virsh undefine): forget it; discovery brings it back if it returns.
          this.vms.delete(t.name);
          this.emit("vm-gone", { vm: t.name, host: t.host });
          return undefined;
        }
      }
    }
    if (record) {
      // Separate from the take: the snapshot is committed whatever happens to pruning.
      try {
        const { kept, deleted } = await pruneSnapshots(backend, t.name, policy.repository, policy);
        if (deleted.length) this.emit("pruned", { vm: t.name, deleted: deleted.map((s) => s.id), kept: kept.filter((s) => s.complete).length });
      } catch (e) {
        this.emit("prune-failed", { vm: t.name, error: (e as Error).message });
      }
    }
    // The paper's step 1-2: read CPU, pick the interval for the next wait.
    let cpu: number | null = null;
    try {
      cpu = await backend.cpuUsage(ref, this.opts.cpuSampleMs ?? 1000);
    } catch {
      cpu = null;
    }
    const interval = retryDelaySeconds(t.failures ?? 0, cpu === null ? policy.minIntervalSeconds : nextIntervalSeconds(cpu, policy), policy);
    t.dueAt = Date.now() + interval * 1000;
    this.emit("rpo", { vm: t.name, cpuPercent: cpu === null ? null : Math.round(cpu * 10) / 10, nextIntervalSeconds: Math.round(interval * 10) / 10, rpoSeconds: this.rpoOf(t) });
    return record;
  }

  /** True only when every watched host answers and none has the VM. */
  private async goneEverywhere(name: string): Promise<boolean> {
    const { backend, hosts } = this.opts;
    try {
      for (const h of hosts) if (!(await backend.hostAlive(h))) return false;
      return (await backend.findVm(name, hosts)) === undefined;
    } catch {
      return false;
    }
  }

  private async runOne(t: Tracked): Promise<void> {
    if (!(await this.opts.backend.hostAlive(t.host))) {
      this.emit("host-down", { vm: t.name, host: t.host });
      this.vms.delete(t.name); // rediscovered wherever it runs next (after recover)
      return;
    }
    await this.snapshotVm(t);
  }

  private rpoOf(t: Tracked): number | null {
    return t.lastSnapshot ? (Date.now() - Date.parse(t.lastSnapshot.createdAt)) / 1000 : null;
  }

  status(): VmStatus[] {
    return [...this.vms.values()].map((t) => ({
      vm: t.name,
      host: t.host,
      newestSnapshotId: t.lastSnapshot?.id ?? null,
      newestSnapshotAt: t.lastSnapshot?.createdAt ?? null,
      rpoSeconds: this.rpoOf(t),
      nextSnapshotInSeconds: Math.max(0, (t.dueAt - Date.now()) / 1000),
      lastError: t.lastError ?? null,
    }));
  }

  private writeStatus(): void {
    if (!this.opts.statusFile) return;
    const tmp = `${this.opts.statusFile}.tmp`;
    fs.mkdirSync(path.dirname(this.opts.statusFile), { recursive: true });
    fs.writeFileSync(tmp, JSON.stringify({ at: new Date().toISOString(), vms: this.status() }, null, 2));
    fs.renameSync(tmp, this.opts.statusFile);
  }

  /**
   * Run until stop() (or maxSnapshots). At most `concurrency` snapshots at once (default 1, so a
   * 2-core host is not swamped); a VM is never snapshotted twice at the same time.
   */
  async run(): Promise<void> {
    await this.discover();
    const limit = Math.max(1, this.opts.concurrency ?? 1);
    const busy = new Map<string, Promise<void>>();
    const done = () => this.opts.maxSnapshots !== undefined && this.snapshotsTaken >= this.opts.maxSnapshots;
    while (!this.stopped && !done()) {
      if (Date.now() - this.lastDiscovery > (this.opts.discoverEveryMs ?? 15_000)) await this.discover();
      const due = [...this.vms.values()]
        .filter((t) => t.dueAt <= Date.now() && !busy.has(t.name))
        .sort((a, b) => a.dueAt - b.dueAt);
      let started = false;
      for (const t of due) {
        if (busy.size >= limit) break;
        if (this.opts.mayRun && !this.opts.mayRun(t.name)) {
          t.dueAt = Date.now() + 1000;
          continue;
        }
        started = true;
        const job = this.runOne(t).finally(() => {
          busy.delete(t.name);
          this.writeStatus();
        });
        busy.set(t.name, job);
      }
      if (!started) {
        this.writeStatus();
        await Promise.race([sleep(250), ...busy.values()]);
      }
    }
    await Promise.all(busy.values());
    this.emit("stopped", { snapshots: this.snapshotsTaken });
  }
}
