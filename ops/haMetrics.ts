/**
 * Prometheus metrics of the HA agent and manager (prom-client), served as text on /metrics.
 * The snapshot age is computed at scrape time from the newest snapshot's capture moment, so it is
 * the RPO right now (what a failure at this instant would lose), not a value sampled right after
 * each snapshot.
 */
import * as http from "http";
import { Counter, Gauge, Histogram, Registry } from "prom-client";
import type { SchedulerEvent } from "./scheduler";
import type { RecoveryOutcome } from "./manager";
import type { HostView } from "../core/ha/decide";

export class HaMetrics {
  readonly registry = new Registry();
  private readonly newestSnapshotAt = new Map<string, number>();
  private readonly snapshotDuration: Gauge;
  private readonly snapshotPause: Gauge;
  private readonly snapshotBytes: Gauge;
  private readonly snapshotFailures: Counter;
  private readonly leaseHeld: Gauge;
  private readonly leaseRemaining: Gauge;
  private readonly recoveries: Counter;
  private readonly recoveryDuration: Histogram;
  private readonly leader: Gauge;

  constructor(private readonly now: () => number = Date.now) {
    const registers = [this.registry];
    const ages = this.newestSnapshotAt;
    const clock = this.now;
    new Gauge({
      name: "protected_vm_snapshot_age_seconds",
      help: "Age of the newest complete snapshot per VM: the state a failure now would lose (RPO now)",
      labelNames: ["vm"],
      registers,
      collect() {
        this.reset();
        for (const [vm, at] of ages) this.set({ vm }, (clock() - at) / 1000);
      },
    });
    this.snapshotDuration = new Gauge({ name: "protected_vm_last_snapshot_duration_seconds", help: "Wall time of the last snapshot (take + commit)", labelNames: ["vm"], registers });
    this.snapshotPause = new Gauge({ name: "protected_vm_last_snapshot_pause_seconds", help: "Guest pause of the last snapshot, measured from the host", labelNames: ["vm"], registers });
    this.snapshotBytes = new Gauge({ name: "protected_vm_last_snapshot_bytes", help: "Bytes newly stored by the last snapshot", labelNames: ["vm"], registers });
    this.snapshotFailures = new Counter({ name: "protected_vm_snapshot_failures_total", help: "Snapshots that failed", labelNames: ["vm"], registers });
    this.leaseHeld = new Gauge({ name: "protected_vm_host_lease_held", help: "1 while the host's lease is held (agent: its own; manager: every known host)", labelNames: ["host"], registers });
    this.leaseRemaining = new Gauge({ name: "protected_vm_host_lease_remaining_seconds", help: "Agent: time until its lease may expire unless renewed", labelNames: ["host"], registers });
    this.recoveries = new Counter({ name: "protected_vm_recoveries_total", help: "Automatic recoveries by outcome", labelNames: ["outcome"], registers });
    this.recoveryDuration = new Histogram({
      name: "protected_vm_recovery_duration_seconds", help: "From the host's lease seen missing to the guest verified running on the new host",
      labelNames: ["outcome"], buckets: [1, 2, 5, 10, 20, 30, 60, 120, 300], registers,
    });
    this.leader = new Gauge({ name: "protected_vm_manager_leader", help: "1 while this manager leads", registers });
  }

  /** Feed the agent's scheduler events. */
  onSchedulerEvent = (e: SchedulerEvent): void => {
    if (!e.vm) return;
    if (e.event === "snapshot") {
      const createdAt = typeof e.createdAt === "string" ? Date.parse(e.createdAt) : Date.parse(e.at);
      this.newestSnapshotAt.set(e.vm, Math.max(createdAt, this.newestSnapshotAt.get(e.vm) ?? 0));
      if (typeof e.durationMs === "number") this.snapshotDuration.set({ vm: e.vm }, e.durationMs / 1000);
      if (typeof e.pauseMs === "number") this.snapshotPause.set({ vm: e.vm }, e.pauseMs / 1000);
      if (typeof e.storedBytes === "number") this.snapshotBytes.set({ vm: e.vm }, e.storedBytes);
    } else if (e.event === "snapshot-failed") {
      this.snapshotFailures.inc({ vm: e.vm });
    }
  };

  /** Record a VM's newest snapshot found at start-up (before the agent's first one). */
  knownSnapshot(vm: string, createdAt: string): void {
    this.newestSnapshotAt.set(vm, Math.max(Date.parse(createdAt), this.newestSnapshotAt.get(vm) ?? 0));
  }

  onAgentLease(host: string): (held: boolean, deadlineMs: number) => void {
    return (held, deadlineMs) => {
      this.leaseHeld.set({ host }, held ? 1 : 0);
      this.leaseRemaining.set({ host }, Math.max(0, (deadlineMs - this.now()) / 1000));
    };
  }

  onHosts = (hosts: HostView[]): void => {
    this.leader.set(1);
    for (const h of hosts) this.leaseHeld.set({ host: h.host }, h.leaseHeld ? 1 : 0);
  };

  onRecovery = (r: RecoveryOutcome): void => {
    this.recoveries.inc({ outcome: r.outcome });
    if (r.sinceLeaseLostMs !== undefined) this.recoveryDuration.observe({ outcome: r.outcome }, r.sinceLeaseLostMs / 1000);
  };

  setLeader(leading: boolean): void {
    this.leader.set(leading ? 1 : 0);
  }

  /** Serve /metrics on 127.0.0.1:port (0 = any free port); resolves with the port. */
  async serve(port: number, host = "127.0.0.1"): Promise<{ port: number; close: () => Promise<void> }> {
    const server = http.createServer((req, res) => {
      if (req.url !== "/metrics") {
        res.writeHead(404).end();
        return;
      }
      this.registry
        .metrics()
        .then((text) => res.writeHead(200, { "Content-Type": this.registry.contentType }).end(text))
        .catch((e: Error) => res.writeHead(500).end(e.message));
    });
    await new Promise<void>((r) => server.listen(port, host, () => r()));
    return {
      port: (server.address() as { port: number }).port,
      close: () => new Promise<void>((r) => server.close(() => r())),
    };
  }
}
