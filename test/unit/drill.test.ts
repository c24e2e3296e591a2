/** runDrill / cleanupDrills against a scripted in-memory Backend. */
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import type { Backend } from "../../hypervisor/backend";
import type { HostRef, SnapshotRecord, VmInfo, VmRef } from "../../core/model";
import { withPolicyDefaults } from "../../core/policy";
import { cleanupDrills, DrillRefused, isDrillOf, runDrill } from "../../ops/drill";

const A = "test:///a/default";
const B = "test:///b/default";

class FakeBackend implements Partial<Backend> {
  readonly kind = "cloudstack" as const; // no libvirt pool scan
  vms = new Map<string, VmInfo>(); // key host|name
  snapshots: SnapshotRecord[] = [];
  failRestore = false;
  deleted: string[] = [];
  constructor(snapshotAgeS: number) {
    const protection = { version: 1 as const, backend: "cloudstack" as const, primaryHost: A, recoveryHosts: [B], policy: withPolicyDefaults({ repository: "secondary", maxIntervalSeconds: 60 }) };
    this.vms.set(`${A}|prod`, { name: "prod", id: "uuid-prod", host: A, state: "running", memoryMiB: 128, vcpus: 1, protection });
    this.snapshots.push({ id: "s1", vm: "prod", backend: "cloudstack", host: A, createdAt: new Date(Date.now() - snapshotAgeS * 1000).toISOString(), includesMemory: true, bytes: 1, storedBytes: 1, complete: true, location: "x" });
  }
  async hostAlive() { return true; }
  async findVm(name: string, hosts: HostRef[]) { for (const h of hosts) { const v = this.vms.get(`${h}|${name}`); if (v) return v; } return undefined; }
  async listProtectedVms(host: HostRef) { return [...this.vms.values()].filter((v) => v.host === host && v.protection); }
  async listSnapshots(vm: string) { return this.snapshots.filter((s) => s.vm === vm); }
  async verifySnapshot() { return true; }
  async restoreSnapshot(s: SnapshotRecord, host: HostRef, o: { name?: string }) {
    const name = o.name ?? s.vm;
    const prod = this.vms.get(`${A}|prod`)!;
    this.vms.set(`${host}|${name}`, { ...prod, name, id: `uuid-${name}`, host, state: this.failRestore ? "crashed" : "running" });
    return this.vms.get(`${host}|${name}`)!;
  }
  async deleteVm(vm: VmRef) { if (this.vms.delete(`${vm.host}|${vm.name}`)) this.deleted.push(`${vm.name}@${vm.host}`); }
}

const opts = () => ({ repository: "secondary", hosts: [A, B], verifyMs: 1, stateDir: fs.mkdtempSync(path.join(os.tmpdir(), "pv-drill-unit-")) });

test("a passing drill: copy on B under another name, RPO/RTO reported, copy removed, production untouched", async () => {
  const b = new FakeBackend(10);
  const r = await runDrill(b as unknown as Backend, "prod", opts());
  expect(r.ok).toBe(true);
  expect(r.host).toBe(B);
  expect(isDrillOf("prod", r.drillName)).toBe(true);
  expect(r.maxRpoSeconds).toBe(120); // maxIntervalSeconds 60 x 2
  expect(r.rpoSeconds).toBeGreaterThanOrEqual(10);
  expect(r.rtoSeconds).not.toBeNull();
  expect(r.checks.map((c) => c.name)).toEqual(["snapshot-recent", "copy-running", "production-untouched", "cleanup"]);
  expect(b.deleted).toEqual([`${r.drillName}@${B}`]);
  expect(b.vms.get(`${A}|prod`)?.state).toBe("running");
});

test("an old snapshot or a copy that does not stay up fails the drill, and the copy is still removed", async () => {
  const old = await runDrill(new FakeBackend(1000) as unknown as Backend, "prod", opts());
  expect(old.ok).toBe(false);
  expect(old.checks.find((c) => c.name === "snapshot-recent")?.ok).toBe(false);
  const b = new FakeBackend(5);
  b.failRestore = true;
  const crashed = await runDrill(b as unknown as Backend, "prod", opts());
  expect(crashed.ok).toBe(false);
  expect(crashed.checks.find((c) => c.name === "copy-running")?.ok).toBe(false);
  expect(crashed.cleanedUp).toBe(true);
  expect([...b.vms.keys()]).toEqual([`${A}|prod`]);
});

test("refusals: unknown VM, no recovery host", async () => {
  await expect(runDrill(new FakeBackend(1) as unknown as Backend, "nope", opts())).rejects.toBeInstanceOf(DrillRefused);
  await expect(runDrill(new FakeBackend(1) as unknown as Backend, "prod", { ...opts(), hosts: [A] })).rejects.toBeInstanceOf(DrillRefused);
});

test("cleanup removes every <vm>-drill-* copy on every host and never production or look-alikes", async () => {
  const b = new FakeBackend(1);
  const prod = b.vms.get(`${A}|prod`)!;
  for (const [h, n] of [[B, "prod-drill-abc1"], [A, "prod-drill-zz9"], [B, "prod-drillish"], [B, "prod-drill-"]] as const) b.vms.set(`${h}|${n}`, { ...prod, name: n, host: h });
  const r = await cleanupDrills(b as unknown as Backend, "prod", { hosts: [A, B], stateDir: opts().stateDir });
  expect(r.removed.sort()).toEqual(["prod-drill-abc1", "prod-drill-zz9"]);
  expect(r.remaining).toEqual([]);
  expect([...b.vms.keys()].sort()).toEqual([`${A}|prod`, `${B}|prod-drill-`, `${B}|prod-drillish`]);
});
