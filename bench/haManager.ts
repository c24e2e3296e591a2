/**
 * HA manager cost at scale, on the simulated cluster (no lab needed):
 *   node dist/bench/haManager.js [--hosts 50] [--vms 1000] [--seconds 20]
 * One leading manager, one agent per simulated host, real timers (1 s manager rounds, 1 s agent
 * rounds, host lease 10 s). Prints the manager's CPU per second of wall time while all is well,
 * then powers one host off and reports how long until each of its VMs was recovered.
 * Agents run in the same process, so their CPU is measured apart from the manager's rounds.
 */
import { SimCluster } from "../hypervisor/simulated/cluster";
import { SimBackend } from "../hypervisor/simulated/backend";
import { SimStore } from "../hypervisor/simulated/coordination";
import { Agent } from "../ops/agent";
import { Manager } from "../ops/manager";

function arg(name: string, def: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : def;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function main(): Promise<void> {
  const hostCount = arg("hosts", 50);
  const vmCount = arg("vms", 1000);
  const seconds = arg("seconds", 20);
  const cluster = new SimCluster();
  cluster.clock.now = () => Date.now();
  const hosts = Array.from({ length: hostCount }, (_, i) => `h${i}`);
  for (const h of hosts) cluster.addHost(h, 1 << 20);
  for (let i = 0; i < vmCount; i++) {
    const primary = i % hostCount;
    cluster.addVm(`vm${i}`, [hosts[primary], hosts[(primary + 1) % hostCount], hosts[(primary + 2) % hostCount]]);
  }
  const store = new SimStore(cluster);
  const agents = new Map(hosts.map((h) => [h, new Agent({ host: h, backend: new SimBackend(cluster, h), coordination: store.client(h), leaseTtlMs: 10_000, tickMs: 1000 })]));
  const recoveredAt = new Map<string, number>();
  const manager = new Manager({
    id: "m1", backend: new SimBackend(cluster, "manager"), coordination: store.client("m1"), fencingMarginMs: 5000, verifyMs: 0, tickMs: 1000,
    onRecovery: (r) => {
      if (r.outcome === "recovered") recoveredAt.set(r.vm, Date.now());
    },
  });
  // Every VM needs a snapshot to be recoverable.
  for (let i = 0; i < vmCount; i++) cluster.takeSnapshot(`vm${i}`, hosts[i % hostCount]);

  let managerCpuUs = 0;
  let agentCpuUs = 0;
  let managerRounds = 0;
  let stop = false;
  const agentLoop = (async () => {
    while (!stop) {
      const t0 = process.cpuUsage();
      for (const a of agents.values()) await a.tick();
      const d = process.cpuUsage(t0);
      agentCpuUs += d.user + d.system;
      await sleep(1000);
    }
  })();
  const managerLoop = (async () => {
    while (!stop) {
      const t0 = process.cpuUsage();
      await manager.tick();
      await manager.settle();
      const d = process.cpuUsage(t0);
      managerCpuUs += d.user + d.system;
      managerRounds++;
      await sleep(1000);
    }
  })();

  await sleep(3000); // claims settle
  managerCpuUs = 0;
  agentCpuUs = 0;
  managerRounds = 0;
  const w0 = Date.now();
  await sleep(seconds * 1000);
  const wall = (Date.now() - w0) / 1000;
  console.log(
    `steady: ${vmCount} VMs on ${hostCount} hosts, ${managerRounds} manager rounds in ${wall.toFixed(1)} s: ` +
      `manager CPU ${(managerCpuUs / 1e6 / wall).toFixed(3)} s per s of wall time (${(managerCpuUs / 1e3 / Math.max(1, managerRounds)).toFixed(1)} ms per round); ` +
      `all ${hostCount} agents together ${(agentCpuUs / 1e6 / wall).toFixed(3)} s/s`,
  );

  const victim = hosts[0];
  const lost = cluster.vms.filter((v) => v.host === victim && v.running).map((v) => v.name);
  const failedAt = Date.now();
  cluster.powerOff(victim);
  agents.delete(victim);
  while (lost.some((vm) => !recoveredAt.has(vm)) && Date.now() - failedAt < 60_000) await sleep(200);
  const times = lost.map((vm) => (recoveredAt.get(vm) ?? NaN) - failedAt).sort((a, b) => a - b);
  const twoCopies = cluster.violations.length;
  console.log(
    `failure of ${victim} (${lost.length} VMs, lease 10 s, margin 5 s): recovered ${times.filter((t) => !Number.isNaN(t)).length}/${lost.length}, ` +
      `first after ${(times[0] / 1000).toFixed(1)} s, last after ${(times[times.length - 1] / 1000).toFixed(1)} s; split-brain instants: ${twoCopies}`,
  );
  stop = true;
  await Promise.all([agentLoop, managerLoop]);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
