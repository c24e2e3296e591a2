/**
 * Runs an HA scenario, written as data, on the simulated cluster with a fake clock: the real
 * Agent (one per powered host) and Manager classes make every decision; commands change power,
 * links and snapshots at given times. Returns the event log (one line per agent/manager event,
 * "<seconds> <source> <event> <vm> ...") and every split-brain instant the cluster saw.
 * In the spirit of pve-ha-manager's src/test (cmdlist + log.expect), not a copy of it.
 */
import { SimCluster } from "../../hypervisor/simulated/cluster";
import { SimBackend } from "../../hypervisor/simulated/backend";
import { SimStore } from "../../hypervisor/simulated/coordination";
import { Agent, HaEvent } from "../../ops/agent";
import { Manager } from "../../ops/manager";

export interface Scenario {
  name: string;
  hosts: Array<{ name: string; capacityMiB?: number }>;
  vms: Array<{ name: string; hosts: string[]; memoryMiB?: number }>;
  /** Manager ids; the first one started leads. Default ["m1", "m2"]. */
  managers?: string[];
  /**
   * [seconds, command]. Commands: "power <host> off|on", "link <host> store|mgmt|storage off|on",
   * "corrupt-newest <vm>", "stop <vm>" / "delete <vm>" (by its user), "kill <manager> after-claim"
   * (dies right after its next claim),
   * "kill <manager>".
   */
  commands: Array<[number, string]>;
  durationSeconds: number;
  /** Host lease TTL, fence safety, fencing margin (ms). Defaults 4000, 1500, 2000. */
  ttlMs?: number;
  fenceSafetyMs?: number;
  fencingMarginMs?: number;
}

export interface ScenarioResult {
  log: string[];
  violations: string[];
  /** Per VM, hosts where a copy runs at the end. */
  runningOn: Record<string, string[]>;
  /** Per VM, the snapshot its running copy was restored from (undefined = never restored). */
  restoredFrom: Record<string, string | undefined>;
  cluster: SimCluster;
}

const STEP_MS = 250;
const SNAPSHOT_EVERY_MS = 1000;

function line(t0: number, e: HaEvent): string {
  const secs = ((Date.parse(e.at) - t0) / 1000).toFixed(2);
  const parts = [secs.padStart(6), e.source, e.event];
  if (e.vm) parts.push(String(e.vm));
  if (Array.isArray(e.vms)) parts.push((e.vms as string[]).join(","));
  if (e.from && e.to) parts.push(`${e.from}->${e.to}`);
  if (e.snapshotId) parts.push(String(e.snapshotId));
  if (e.owner) parts.push(`owner=${e.owner}`);
  if (e.reason) parts.push(`(${e.reason})`);
  return parts.join(" ");
}

const QUIET = new Set(["lease-granted", "lease-renewed", "started", "not-leader", "store-unreachable", "publish-failed", "local-list-failed", "tick-failed"]);

export async function runScenario(s: Scenario): Promise<ScenarioResult> {
  const cluster = new SimCluster();
  const t0 = cluster.clock.now();
  const store = new SimStore(cluster);
  const log: string[] = [];
  const record = (e: HaEvent) => {
    if (!QUIET.has(e.event)) log.push(line(t0, e));
  };
  const note = (text: string) => log.push(`${((cluster.clock.now() - t0) / 1000).toFixed(2).padStart(6)} ${text}`);
  const ttlMs = s.ttlMs ?? 4000;
  const fenceSafetyMs = s.fenceSafetyMs ?? 1500;

  for (const h of s.hosts) cluster.addHost(h.name, h.capacityMiB);
  for (const v of s.vms) cluster.addVm(v.name, v.hosts, v.memoryMiB);

  const agents = new Map<string, Agent>();
  const newAgent = (host: string) =>
    new Agent({
      host, backend: new SimBackend(cluster, host), coordination: store.client(host), leaseTtlMs: ttlMs, fenceSafetyMs, tickMs: STEP_MS,
      capacityMiB: cluster.host(host).capacityMiB, now: cluster.clock.now, log: record,
    });
  for (const h of s.hosts) agents.set(h.name, newAgent(h.name));

  const killAfterClaim = new Set<string>();
  const managers = (s.managers ?? ["m1", "m2"]).map((id) => {
    const m: Manager = new Manager({
      id, backend: new SimBackend(cluster, "manager"), coordination: store.client(id), fencingMarginMs: s.fencingMarginMs ?? 2000,
      leaseTtlMs: 3000, verifyMs: 0, now: cluster.clock.now, log: record,
      afterClaim: () => {
        if (!killAfterClaim.has(id)) return;
        note(`cmdlist: ${id} killed after its claim`);
        m.kill();
        store.dead.add(id);
      },
    });
    return m;
  });

  const commands = [...s.commands].sort((a, b) => a[0] - b[0]);
  let lastSnapshotAt = -Infinity;
  const failing = new Set<string>();
  for (let t = 0; t <= s.durationSeconds * 1000; t += STEP_MS) {
    while (commands.length && commands[0][0] * 1000 <= t) {
      const [, cmd] = commands.shift()!;
      note(`cmdlist: ${cmd}`);
      const w = cmd.split(" ");
      if (w[0] === "power" && w[2] === "off") {
        cluster.powerOff(w[1]);
        agents.delete(w[1]);
      } else if (w[0] === "power" && w[2] === "on") {
        cluster.powerOn(w[1]);
        agents.set(w[1], newAgent(w[1]));
      } else if (w[0] === "link") cluster.host(w[1]).links[w[2] as "store" | "mgmt" | "storage"] = w[3] === "on";
      else if (w[0] === "corrupt-newest") cluster.snapshotsOf(w[1])[0].corrupt = true;
      else if (w[0] === "stop") for (const v of cluster.copies(w[1])) v.running = false;
      else if (w[0] === "delete") cluster.vms.splice(0, cluster.vms.length, ...cluster.vms.filter((v) => v.name !== w[1]));
      else if (w[0] === "kill" && w[2] === "after-claim") killAfterClaim.add(w[1]);
      else if (w[0] === "kill") {
        const m = managers.find((x) => x.id === w[1]);
        m?.kill();
        store.dead.add(w[1]);
      } else throw new Error(`unknown scenario command: ${cmd}`);
    }
    // The agents' snapshot loop (ops/scheduler in a real agent), reduced to "every second, each
    // VM the agent owns, if its host reaches the storage".
    if (t - lastSnapshotAt >= SNAPSHOT_EVERY_MS) {
      lastSnapshotAt = t;
      for (const [host, agent] of agents) {
        for (const vm of agent.ownedVms()) {
          try {
            await new SimBackend(cluster, host).takeSnapshot({ name: vm, host }, { includeMemory: true, repository: "/sim/repo" });
            failing.delete(vm);
          } catch (e) {
            if (!failing.has(vm)) note(`agent/${host} snapshot-failed ${vm} (${(e as Error).message})`);
            failing.add(vm);
          }
        }
      }
    }
    for (const agent of agents.values()) await agent.tick();
    for (const m of managers) {
      await m.tick();
      await m.settle();
    }
    for (const v of s.vms) {
      const running = cluster.runningCopies(v.name);
      if (running.length > 1) cluster.violations.push(`${t}: ${v.name} runs on ${running.map((r) => r.host).join(", ")}`);
    }
    cluster.clock.advance(STEP_MS);
  }
  const runningOn: Record<string, string[]> = {};
  const restoredFrom: Record<string, string | undefined> = {};
  for (const v of s.vms) {
    const copies = cluster.runningCopies(v.name);
    runningOn[v.name] = copies.map((c) => c.host);
    restoredFrom[v.name] = copies[0]?.restoredFrom;
  }
  return { log, violations: [...new Set(cluster.violations)], runningOn, restoredFrom, cluster };
}
