/** The HA /metrics endpoint, scraped over HTTP: RPO now (grows between snapshots), last snapshot figures, lease state, recoveries. */
import * as http from "http";
import { HaMetrics } from "../../ops/haMetrics";
import { Agent } from "../../ops/agent";
import { SimCluster } from "../../hypervisor/simulated/cluster";
import { SimBackend } from "../../hypervisor/simulated/backend";
import { SimStore } from "../../hypervisor/simulated/coordination";

function scrape(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    http.get({ host: "127.0.0.1", port, path: "/metrics" }, (res) => {
      let body = "";
      res.on("data", (d) => (body += d));
      res.on("end", () => resolve(body));
    }).on("error", reject);
  });
}

function value(text: string, series: string): number {
  const line = text.split("\n").find((l) => l.startsWith(series + " "));
  if (!line) throw new Error(`no ${series} in:\n${text}`);
  return Number(line.slice(series.length + 1));
}

test("agent and manager metrics, scraped", async () => {
  const cluster = new SimCluster();
  cluster.addHost("a");
  cluster.addVm("vm1", ["a"]);
  const metrics = new HaMetrics(cluster.clock.now);
  const agent = new Agent({
    host: "a", backend: new SimBackend(cluster, "a"), coordination: new SimStore(cluster).client("a"), leaseTtlMs: 4000,
    now: cluster.clock.now, onLease: metrics.onAgentLease("a"),
  });
  await agent.tick();
  const at = new Date(cluster.clock.now()).toISOString();
  metrics.onSchedulerEvent({ event: "snapshot", at, vm: "vm1", createdAt: at, durationMs: 1500, pauseMs: 250, storedBytes: 4096 });
  metrics.onSchedulerEvent({ event: "snapshot-failed", at, vm: "vm1", error: "disk full" });
  metrics.onRecovery({ vm: "vm1", from: "a", to: "b", outcome: "recovered", sinceLeaseLostMs: 7000 });
  const server = await metrics.serve(0);
  try {
    cluster.clock.advance(3000);
    const first = await scrape(server.port);
    expect(value(first, 'protected_vm_snapshot_age_seconds{vm="vm1"}')).toBe(3);
    expect(value(first, 'protected_vm_last_snapshot_duration_seconds{vm="vm1"}')).toBe(1.5);
    expect(value(first, 'protected_vm_last_snapshot_pause_seconds{vm="vm1"}')).toBe(0.25);
    expect(value(first, 'protected_vm_last_snapshot_bytes{vm="vm1"}')).toBe(4096);
    expect(value(first, 'protected_vm_snapshot_failures_total{vm="vm1"}')).toBe(1);
    expect(value(first, 'protected_vm_host_lease_held{host="a"}')).toBe(1);
    expect(value(first, 'protected_vm_recoveries_total{outcome="recovered"}')).toBe(1);
    expect(value(first, 'protected_vm_recovery_duration_seconds_bucket{le="10",outcome="recovered"}')).toBe(1);
    expect(value(first, 'protected_vm_recovery_duration_seconds_bucket{le="5",outcome="recovered"}')).toBe(0);
    // The age keeps growing between snapshots (it is computed at scrape time).
    cluster.clock.advance(2000);
    expect(value(await scrape(server.port), 'protected_vm_snapshot_age_seconds{vm="vm1"}')).toBe(5);
    // The lease lapses: the agent's next round reports it lost.
    cluster.host("a").links.store = false;
    await agent.tick();
    expect(value(await scrape(server.port), 'protected_vm_host_lease_held{host="a"}')).toBe(0);
  } finally {
    await server.close();
  }
});
