/**
 * HA scenarios as data: a cluster, commands at given seconds, and the event log the agents and
 * managers must produce (the way pve-ha-manager's src/test pairs a cmdlist with log.expect).
 * Hosts a, b (and c); VMs of 128 MiB; host lease TTL 4 s, fence safety 1.5 s, fencing margin 2 s,
 * a round every 0.25 s, each owned VM snapshotted every second.
 */
import type { Scenario } from "../support/haScenario";

export interface ScenarioCase extends Scenario {
  /** The whole expected log, in order. */
  expectLog: string[];
  /** Where each VM runs at the end (exactly one copy), or [] for nowhere. */
  expectRunning: Record<string, string[]>;
  /** Snapshot each VM's running copy was restored from (undefined: never moved). */
  expectRestoredFrom?: Record<string, string | undefined>;
}

const two = { hosts: [{ name: "a" }, { name: "b" }], vms: [{ name: "vm1", hosts: ["a", "b"] }], durationSeconds: 16 };
const three = { hosts: [{ name: "a" }, { name: "b" }, { name: "c" }], vms: [{ name: "vm1", hosts: ["a", "b", "c"] }], durationSeconds: 16 };

export const scenarios: ScenarioCase[] = [
  { ...two, name: "power loss", commands: [[5, "power a off"]], expectLog: [
      "  0.00 agent/a claimed vm1",
      "  0.00 manager/m1 elected",
      "  5.00 cmdlist: power a off",
      "  8.75 manager/m1 wait vm1 (a lost its lease; fencing margin)",
      " 10.75 manager/m1 claimed vm1 a->b s4 (a lost its lease)",
      " 10.75 manager/m1 recovered vm1 a->b s4",
    ], expectRunning: { vm1: ["b"] } },
  { ...two, name: "host cut off from the store but running", commands: [[5, "link a store off"], [12, "link a store on"]], expectLog: [
      "  0.00 agent/a claimed vm1",
      "  0.00 manager/m1 elected",
      "  5.00 cmdlist: link a store off",
      "  5.00 agent/a lease-renewal-failed",
      "  7.25 agent/a self-fence vm1 (cannot renew the host lease; it may expire at 2026-01-01T00:00:08.750Z)",
      "  7.25 agent/a fenced vm1",
      "  8.75 manager/m1 wait vm1 (a lost its lease; fencing margin)",
      " 10.75 manager/m1 claimed vm1 a->b s5 (a lost its lease)",
      " 10.75 manager/m1 recovered vm1 a->b s5",
      " 12.00 cmdlist: link a store on",
      " 12.00 agent/a lease-lost",
      " 12.25 agent/a fenced-vm-recovered-elsewhere vm1 owner=b",
    ], expectRunning: { vm1: ["b"] } },
  { ...two, name: "only the management network cut", commands: [[5, "link a mgmt off"]], expectLog: [
      "  0.00 agent/a claimed vm1",
      "  0.00 manager/m1 elected",
      "  5.00 cmdlist: link a mgmt off",
    ], expectRunning: { vm1: ["a"] } },
  { ...two, name: "storage lost", commands: [[5, "link a storage off"]], expectLog: [
      "  0.00 agent/a claimed vm1",
      "  0.00 manager/m1 elected",
      "  5.00 cmdlist: link a storage off",
      "  5.00 agent/a snapshot-failed vm1 (simulated host a cannot reach the shared storage)",
    ], expectRunning: { vm1: ["a"] } },
  {
    ...two, name: "flapping host: short store cuts", durationSeconds: 20,
    commands: [[3, "link a store off"], [5, "link a store on"], [8, "link a store off"], [10, "link a store on"], [13, "link a store off"], [15, "link a store on"]],
    expectLog: [
      "  0.00 agent/a claimed vm1",
      "  0.00 manager/m1 elected",
      "  3.00 cmdlist: link a store off",
      "  3.00 agent/a lease-renewal-failed",
      "  5.00 cmdlist: link a store on",
      "  8.00 cmdlist: link a store off",
      "  8.00 agent/a lease-renewal-failed",
      " 10.00 cmdlist: link a store on",
      " 13.00 cmdlist: link a store off",
      " 13.00 agent/a lease-renewal-failed",
      " 15.00 cmdlist: link a store on",
    ], expectRunning: { vm1: ["a"] },
  },
  {
    ...two, name: "flapping host: cut past the fence point, back before the lease expires",
    commands: [[5, "link a store off"], [7.75, "link a store on"]], expectLog: [
      "  0.00 agent/a claimed vm1",
      "  0.00 manager/m1 elected",
      "  5.00 cmdlist: link a store off",
      "  5.00 agent/a lease-renewal-failed",
      "  7.25 agent/a self-fence vm1 (cannot renew the host lease; it may expire at 2026-01-01T00:00:08.750Z)",
      "  7.25 agent/a fenced vm1",
      "  7.75 cmdlist: link a store on",
      "  7.75 manager/m1 claimed vm1 a->b s5 (a fenced vm1)",
      "  7.75 manager/m1 recovered vm1 a->b s5",
      "  8.00 agent/a fenced-vm-recovered-elsewhere vm1 owner=b",
    ], expectRunning: { vm1: ["b"] },
  },
  { ...two, name: "leader lost mid-recovery", commands: [[4, "kill m1 after-claim"], [5, "power a off"]], expectLog: [
      "  0.00 agent/a claimed vm1",
      "  0.00 manager/m1 elected",
      "  4.00 cmdlist: kill m1 after-claim",
      "  5.00 cmdlist: power a off",
      "  8.75 manager/m1 wait vm1 (a lost its lease; fencing margin)",
      " 10.75 manager/m1 claimed vm1 a->b s4 (a lost its lease)",
      " 10.75 cmdlist: m1 killed after its claim",
      " 13.75 manager/m2 elected",
      " 13.75 manager/m2 claimed vm1 a->b s4 (finishing the recovery onto b)",
      " 13.75 manager/m2 recovered vm1 a->b s4",
    ], expectRunning: { vm1: ["b"] } },
  {
    ...three, name: "two hosts lost",
    vms: [{ name: "vm1", hosts: ["a", "b", "c"] }, { name: "vm2", hosts: ["b", "a", "c"] }],
    commands: [[5, "power a off"], [5, "power b off"]], expectLog: [
      "  0.00 agent/a claimed vm1",
      "  0.00 agent/b claimed vm2",
      "  0.00 manager/m1 elected",
      "  5.00 cmdlist: power a off",
      "  5.00 cmdlist: power b off",
      "  8.75 manager/m1 wait vm1 (a lost its lease; fencing margin)",
      "  8.75 manager/m1 wait vm2 (b lost its lease; fencing margin)",
      " 10.75 manager/m1 claimed vm1 a->c s7 (a lost its lease; skipped b: no lease)",
      " 10.75 manager/m1 claimed vm2 b->c s8 (b lost its lease; skipped a: no lease)",
      " 10.75 manager/m1 recovered vm1 a->c s7",
      " 10.75 manager/m1 recovered vm2 b->c s8",
    ], expectRunning: { vm1: ["c"], vm2: ["c"] },
  },
  { ...three, name: "recovery host full", hosts: [{ name: "a" }, { name: "b", capacityMiB: 64 }, { name: "c" }], commands: [[5, "power a off"]], expectLog: [
      "  0.00 agent/a claimed vm1",
      "  0.00 manager/m1 elected",
      "  5.00 cmdlist: power a off",
      "  8.75 manager/m1 wait vm1 (a lost its lease; fencing margin)",
      " 10.75 manager/m1 claimed vm1 a->c s4 (a lost its lease; skipped b: full (64 MiB free < 128))",
      " 10.75 manager/m1 recovered vm1 a->c s4",
    ], expectRunning: { vm1: ["c"] } },
  { ...three, name: "recovery host down", commands: [[2, "power b off"], [8, "power a off"]], durationSeconds: 18, expectLog: [
      "  0.00 agent/a claimed vm1",
      "  0.00 manager/m1 elected",
      "  2.00 cmdlist: power b off",
      "  8.00 cmdlist: power a off",
      " 11.75 manager/m1 wait vm1 (a lost its lease; fencing margin)",
      " 13.75 manager/m1 claimed vm1 a->c s7 (a lost its lease; skipped b: no lease)",
      " 13.75 manager/m1 recovered vm1 a->c s7",
    ], expectRunning: { vm1: ["c"] } },
  { ...two, name: "no recovery host left, until it returns", commands: [[2, "power b off"], [5, "power a off"], [12, "power b on"]], expectLog: [
      "  0.00 agent/a claimed vm1",
      "  0.00 manager/m1 elected",
      "  2.00 cmdlist: power b off",
      "  5.00 cmdlist: power a off",
      "  8.75 manager/m1 wait vm1 (a lost its lease; fencing margin)",
      " 10.75 manager/m1 refuse vm1 (a lost its lease; no healthy recovery host (b: no lease))",
      " 12.00 cmdlist: power b on",
      " 12.00 manager/m1 claimed vm1 a->b s4 (a lost its lease)",
      " 12.00 manager/m1 recovered vm1 a->b s4",
    ], expectRunning: { vm1: ["b"] } },
  { ...two, name: "newest snapshot corrupt", commands: [[5, "power a off"], [5, "corrupt-newest vm1"]], expectLog: [
      "  0.00 agent/a claimed vm1",
      "  0.00 manager/m1 elected",
      "  5.00 cmdlist: power a off",
      "  5.00 cmdlist: corrupt-newest vm1",
      "  8.75 manager/m1 wait vm1 (a lost its lease; fencing margin)",
      " 10.75 manager/m1 claimed vm1 a->b s4 (a lost its lease)",
      " 10.75 manager/m1 recovery-refused vm1 a->b s4",
      " 11.00 manager/m1 claimed vm1 a->b s3 (finishing the recovery onto b)",
      " 11.00 manager/m1 recovered vm1 a->b s3",
    ], expectRunning: { vm1: ["b"] } },
  { ...two, name: "VM stopped by its user, then its host loses power: not recovered", commands: [[3, "stop vm1"], [6, "power a off"]], expectLog: [
      "  0.00 agent/a claimed vm1",
      "  0.00 manager/m1 elected",
      "  3.00 cmdlist: stop vm1",
      "  3.00 agent/a snapshot-failed vm1 (vm1 does not run on a)",
      "  3.00 agent/a marked-stopped vm1",
      "  6.00 cmdlist: power a off",
    ], expectRunning: { vm1: [] } },
  { ...two, name: "VM deleted by its user: ownership released, host loss recovers nothing", commands: [[3, "delete vm1"], [6, "power a off"]], expectLog: [
      "  0.00 agent/a claimed vm1",
      "  0.00 manager/m1 elected",
      "  3.00 cmdlist: delete vm1",
      "  3.00 agent/a snapshot-failed vm1 (vm1 does not run on a)",
      "  3.00 agent/a released vm1",
      "  6.00 cmdlist: power a off",
    ], expectRunning: { vm1: [] } },
];
