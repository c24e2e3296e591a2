import { inspect } from "util";
import { FakeCloudStack } from "../support/cloudstackServer";
import { CapturedLog, backendFor, captureLog, clientFor, startCloud } from "../support/cloudstack/harness";
import { CloudStackBackend } from "../../hypervisor/cloudstack/backend";
import { CloudStackError } from "../../hypervisor/cloudstack/errors";
import { RecoveryRefusedError } from "../../hypervisor/cloudstack/recovery";
import { snapshotsToDelete } from "../../core/retention";
import { ProtectionRecord, withPolicyDefaults } from "../../core/policy";
import type { VmSpec } from "../../core/model";

let cs: FakeCloudStack;
let log: CapturedLog;
let be: CloudStackBackend;

beforeEach(async () => {
  cs = await startCloud();
  log = captureLog();
  be = backendFor(cs, log);
});
afterEach(async () => {
  await cs.stop();
});

function protection(repository: "primary" | "secondary", primaryHost: string, recoveryHosts: string[]): ProtectionRecord {
  return { version: 1, backend: "cloudstack", primaryHost, recoveryHosts, policy: withPolicyDefaults({ repository, keepLast: 2, maxIntervalSeconds: 600 }) };
}

function spec(name: string, prot?: ProtectionRecord): VmSpec {
  return {
    name,
    memoryMiB: 1024,
    vcpus: 1,
    cloudstack: { zoneId: cs.zoneId, serviceOfferingId: cs.offeringId, templateId: cs.templateId },
    protection: prot,
  };
}

async function runningVm(name: string, host: string, repository: "primary" | "secondary" = "primary") {
  const [h1, h2, h3] = cs.hostIds;
  const info = await be.defineVm(spec(name, protection(repository, host, [h1, h2, h3].filter((h) => h !== host))), host);
  expect(info.state).toBe("shutoff");
  await be.startVm({ name, host });
  return info;
}

describe("CloudStackBackend: VMs", () => {
  test("defineVm deploys (stopped) with the protection record as tags; startVm runs it on the host; defineVm is idempotent", async () => {
    const [h1] = cs.hostIds;
    const info = await runningVm("app0", h1);
    const vm = cs.vmByName("app0")!;
    expect(vm.state).toBe("Running");
    expect(vm.hostid).toBe(h1);
    const found = await be.findVm("app0", [h1]);
    expect(found).toMatchObject({ name: "app0", id: info.id, host: h1, state: "running", memoryMiB: 1024, vcpus: 1 });
    expect(found?.protection?.primaryHost).toBe(h1);
    expect(found?.protection?.policy.repository).toBe("primary");
    const again = await be.defineVm(spec("app0", found!.protection), h1);
    expect(again.id).toBe(info.id);
    expect(cs.commandCount("deployVirtualMachine")).toBe(1);
    expect((await be.listProtectedVms(h1)).map((v) => v.name)).toEqual(["app0"]);
    expect(await be.listProtectedVms(cs.hostIds[1])).toEqual([]);
  });

  test("a protection record longer than one tag value (255) is split and read back", async () => {
    const [h1, h2] = cs.hostIds;
    const prot = protection("primary", h1, [h2, ...Array.from({ length: 12 }, (_, i) => `recovery-host-with-a-long-id-${i}`)]);
    expect(JSON.stringify(prot).length).toBeGreaterThan(255);
    await be.defineVm(spec("app-tags", prot), h1);
    expect((await be.findVm("app-tags", [h1]))?.protection).toEqual(prot);
    const changed = { ...prot, recoveryHosts: [h2] };
    await be.setProtection({ name: "app-tags", host: h1 }, changed);
    expect((await be.findVm("app-tags", [h1]))?.protection).toEqual(changed);
  });

  test("cpuUsage reads listVirtualMachinesMetrics; hostAlive reads host state and resourcestate", async () => {
    const [h1, h2, h3] = cs.hostIds;
    const info = await runningVm("app-cpu", h1);
    cs.setCpu(info.id, 42.5);
    expect(await be.cpuUsage({ name: "app-cpu", host: h1 })).toBe(42.5);
    expect(await be.hostAlive(h2)).toBe(true);
    cs.setHostState(h2, "Down");
    expect(await be.hostAlive(h2)).toBe(false);
    cs.hosts.get(h3)!.resourcestate = "Maintenance";
    expect(await be.hostAlive(h3)).toBe(false);
    expect(await be.hostAlive("no-such-host")).toBe(false);
  });

  test("stop, start and delete", async () => {
    const [h1] = cs.hostIds;
    await runningVm("app-life", h1);
    await be.stopVm({ name: "app-life", host: h1 });
    expect(cs.vmByName("app-life")?.state).toBe("Stopped");
    await be.startVm({ name: "app-life", host: h1 });
    expect(cs.vmByName("app-life")?.state).toBe("Running");
    await be.deleteVm({ name: "app-life", host: h1 });
    expect(cs.vmByName("app-life")).toBeUndefined();
    await be.deleteVm({ name: "app-life", host: h1 }); // no error when already gone
  });
});

describe("CloudStackBackend: snapshots and CloudStack's rules", () => {
  test("memory snapshots need a Running VM; KVM refuses a disk-only snapshot of a running VM", async () => {
    const [h1] = cs.hostIds;
    await be.defineVm(spec("app-rules"), h1);
    await expect(be.takeSnapshot({ name: "app-rules", host: h1 }, { includeMemory: true, repository: "primary" })).rejects.toThrow(/needs the VM Running/);
    await be.startVm({ name: "app-rules", host: h1 });
    await expect(be.takeSnapshot({ name: "app-rules", host: h1 }, { includeMemory: false, repository: "primary" })).rejects.toThrow(/disk-only VM snapshot of a running VM/);
    await expect(be.takeSnapshot({ name: "app-rules", host: h1 }, { includeMemory: true, repository: "nfs" })).rejects.toThrow(/"primary" or "secondary"/);
  });

  test("CloudStack's revert rule: a stopped VM cannot be reverted to a memory snapshot (the server enforces it)", async () => {
    const [h1] = cs.hostIds;
    await runningVm("app-revert", h1);
    const s = await be.takeSnapshot({ name: "app-revert", host: h1 }, { includeMemory: true, repository: "primary" });
    await be.stopVm({ name: "app-revert", host: h1 });
    const e = await clientFor(cs)
      .callAsync("revertToVMSnapshot", { vmsnapshotid: s.id })
      .catch((x) => x as CloudStackError);
    expect(e).toBeInstanceOf(CloudStackError);
    expect((e as CloudStackError).errorCode).toBe(431);
    expect((e as CloudStackError).message).toContain("You can revert running VM to disk and memory type snapshot and stopped VM to disk type snapshot");
  });

  test("a volume snapshot of a running KVM VM is refused unless kvm.snapshot.enabled; createSnapshotFromVMSnapshot is the way to secondary", async () => {
    const [h1] = cs.hostIds;
    const info = await runningVm("app-kvm", h1, "secondary");
    const root = cs.rootVolume(info.id);
    const e = (await clientFor(cs).callAsync("createSnapshot", { volumeid: root.id }).catch((x) => x)) as CloudStackError;
    expect(e.errorCode).toBe(530); // SnapshotManagerImpl throws CloudRuntimeException
    expect(e.message).toContain("kvm.snapshot.enabled");
    const rec = await be.takeSnapshot({ name: "app-kvm", host: h1 }, { includeMemory: true, repository: "secondary" });
    expect(rec.complete).toBe(true);
    expect(rec.location).not.toBe(rec.id);
    expect(cs.snapshots.get(rec.location)?.state).toBe("BackedUp");
    expect(await be.verifySnapshot(rec, "secondary")).toBe(true);
  });
});

describe("CloudStackBackend: CloudStack's limits", () => {
  test("two snapshots at once: CloudStack allows one VM-snapshot task per VM ('please try again later'), the client retries", async () => {
    const [h1] = cs.hostIds;
    const busyBe = backendFor(cs, log, { retry: { retries: 8, minTimeoutMs: 20, maxTimeoutMs: 50, factor: 1.5 } });
    const info = await runningVm("app-conc", h1);
    const ref = { name: "app-conc", host: h1 };
    const [a, b] = await Promise.all([
      busyBe.takeSnapshot(ref, { includeMemory: true, repository: "primary" }),
      busyBe.takeSnapshot(ref, { includeMemory: true, repository: "primary" }),
    ]);
    expect(a.id).not.toBe(b.id);
    expect(cs.commandCount("createVMSnapshot")).toBeGreaterThan(2); // at least one was refused as busy and sent again
    expect([...cs.vmSnapshots.values()].filter((s) => s.virtualmachineid === info.id && s.state === "Ready")).toHaveLength(2);
    expect(log.lines.some((l) => /createVMSnapshot attempt \d failed \(530\); retrying/.test(l))).toBe(true);
  });

  test("vmsnapshot.max reached: the error tells the user to delete old ones (retention keeps below it)", async () => {
    cs.vmSnapshotMax = 2;
    const [h1] = cs.hostIds;
    await runningVm("app-max", h1);
    const ref = { name: "app-max", host: h1 };
    await be.takeSnapshot(ref, { includeMemory: true, repository: "primary" });
    await be.takeSnapshot(ref, { includeMemory: true, repository: "primary" });
    const e = (await be.takeSnapshot(ref, { includeMemory: true, repository: "primary" }).catch((x) => x)) as CloudStackError;
    expect(e.errorCode).toBe(530);
    expect(e.message).toMatch(/can just have : 2 Instance Snapshots. Please delete old ones/);
  });

  test("placing a VM on a host needs a root-admin key (531 with the reason)", async () => {
    const user = backendFor(cs, undefined, { apiKey: cs.userApiKey, secretKey: cs.userSecretKey });
    const e = (await user.defineVm(spec("app-user"), cs.hostIds[0]).catch((x) => x)) as CloudStackError;
    expect(e.errorCode).toBe(531);
    expect(e.message).toContain("Parameter hostid can only be specified by a Root Admin");
  });
});

describe("CloudStackBackend: failed async jobs leave nothing behind", () => {
  test("createVMSnapshot job fails: the error carries CloudStack's text; no VM snapshot is left in Error", async () => {
    const [h1] = cs.hostIds;
    const info = await runningVm("app-fail1", h1);
    cs.failNextJob({ command: "createVMSnapshot", code: 530, text: "Failed to create Instance Snapshot: libvirt error: internal snapshot failed" });
    const e = (await be.takeSnapshot({ name: "app-fail1", host: h1 }, { includeMemory: true, repository: "primary" }).catch((x) => x)) as CloudStackError;
    expect(e).toBeInstanceOf(CloudStackError);
    expect(e.errorCode).toBe(530);
    expect(e.message).toContain("libvirt error: internal snapshot failed");
    expect([...cs.vmSnapshots.values()].filter((s) => s.virtualmachineid === info.id)).toEqual([]);
    expect(await be.listSnapshots("app-fail1", "primary")).toEqual([]);
  });

  test("the backup job fails: neither the VM snapshot nor the volume snapshot is left", async () => {
    const [h1] = cs.hostIds;
    const info = await runningVm("app-fail2", h1, "secondary");
    cs.failNextJob({ command: "createSnapshotFromVMSnapshot", code: 530, text: "Failed to copy the snapshot to secondary storage" });
    await expect(be.takeSnapshot({ name: "app-fail2", host: h1 }, { includeMemory: true, repository: "secondary" })).rejects.toThrow(/Failed to copy the snapshot to secondary storage/);
    expect([...cs.vmSnapshots.values()].filter((s) => s.virtualmachineid === info.id)).toEqual([]);
    expect([...cs.snapshots.values()]).toEqual([]);
  });

  test("deployVirtualMachine job fails: the VM CloudStack left in state Error is expunged", async () => {
    const [h1] = cs.hostIds;
    cs.failNextJob({ command: "deployVirtualMachine", code: 533, text: "Unable to create a deployment for VM instance: insufficient capacity" });
    const e = (await be.defineVm(spec("app-fail3"), h1).catch((x) => x)) as CloudStackError;
    expect(e.errorCode).toBe(533);
    expect(e.message).toContain("insufficient capacity");
    expect([...cs.vms.values()].filter((v) => v.name === "app-fail3")).toEqual([]);
    // and a second try works
    expect((await be.defineVm(spec("app-fail3"), h1)).name).toBe("app-fail3");
  });

  test("a dropped answer to createSnapshotFromVMSnapshot does not make a second backup (the lookup waits for the running job)", async () => {
    const [h1] = cs.hostIds;
    await runningVm("app-drop2", h1, "secondary");
    cs.jobDurationMs = 150;
    cs.dropNextConnection({ command: "createSnapshotFromVMSnapshot", afterProcessing: true });
    const rec = await be.takeSnapshot({ name: "app-drop2", host: h1 }, { includeMemory: true, repository: "secondary" });
    expect(rec.complete).toBe(true);
    expect(cs.commandCount("createSnapshotFromVMSnapshot")).toBe(1);
    expect([...cs.snapshots.values()].map((s) => s.state)).toEqual(["BackedUp"]);
  });

  test("a dropped answer to createVMSnapshot does not make a second snapshot", async () => {
    const [h1] = cs.hostIds;
    const info = await runningVm("app-drop", h1);
    cs.dropNextConnection({ command: "createVMSnapshot", afterProcessing: true });
    const rec = await be.takeSnapshot({ name: "app-drop", host: h1 }, { includeMemory: true, repository: "primary" });
    expect(rec.complete).toBe(true);
    expect(cs.commandCount("createVMSnapshot")).toBe(1);
    expect([...cs.vmSnapshots.values()].filter((s) => s.virtualmachineid === info.id)).toHaveLength(1);
  });
});

describe("CloudStackBackend: recovery", () => {
  test("deploy -> snapshots -> retention -> host down -> warm recovery on the other host, resuming from memory", async () => {
    const [h1, h2] = cs.hostIds;
    const info = await runningVm("app1", h1, "primary");
    const ref = { name: "app1", host: h1 };
    const policy = (await be.findVm("app1", [h1]))!.protection!.policy;

    const taken = [];
    for (let i = 1; i <= 3; i++) {
      cs.writeGuestMemory(info.id, `counter=${i}`);
      taken.push(await be.takeSnapshot(ref, { includeMemory: true, repository: policy.repository }));
    }
    let list = await be.listSnapshots("app1", "primary");
    expect(list.map((s) => s.id)).toEqual(taken.map((s) => s.id).reverse());
    expect(list.every((s) => s.complete && s.includesMemory && s.host === h1)).toBe(true);

    for (const doomed of snapshotsToDelete(list, policy)) await be.deleteSnapshot(doomed, "primary");
    list = await be.listSnapshots("app1", "primary");
    expect(list.map((s) => s.id)).toEqual([taken[2].id, taken[1].id]);

    cs.writeGuestMemory(info.id, "counter=4 (after the last snapshot: lost)");
    const bootsBefore = cs.vms.get(info.id)!.boots;
    cs.setHostState(h1, "Down");
    expect(await be.hostAlive(h1)).toBe(false);
    expect((await be.findVm("app1", [h1, h2]))?.state).toBe("unknown");

    const newest = list[0];
    const out = await be.restoreSnapshot(newest, h2, { repository: "primary" });
    expect(out.recovery.path).toBe("warm");
    expect(out.recovery.snapshotId).toBe(newest.id);
    expect(out.recovery.reason).toMatch(/resume from memory/);
    expect(out).toMatchObject({ name: "app1", id: info.id, host: h2, state: "running" });

    // What a user would check: the VM runs on the other host with the snapshot's memory, not rebooted.
    const vm = cs.vms.get(info.id)!;
    expect(vm.state).toBe("Running");
    expect(vm.hostid).toBe(h2);
    expect(vm.guestMemory).toBe("counter=3");
    expect(vm.boots).toBe(bootsBefore);
    expect((await be.findVm("app1", [h1, h2]))?.state).toBe("running");
    expect(log.lines.some((l) => /recovered on .* by the warm path/.test(l))).toBe(true);

    // Idempotent: a re-run reports the finished recovery and does nothing.
    const reverts = cs.commandCount("revertToVMSnapshot");
    const again = await be.restoreSnapshot(newest, h2, { repository: "primary" });
    expect(again.recovery).toMatchObject({ path: "warm", alreadyRecovered: true });
    expect(cs.commandCount("revertToVMSnapshot")).toBe(reverts);
  }, 20_000);

  test("the VM stays Stopped by CloudStack HA after the host died: warm recovery still works", async () => {
    const [h1, h2] = cs.hostIds;
    cs.stopVmsOnHostDown = true;
    const info = await runningVm("app-ha", h1);
    cs.writeGuestMemory(info.id, "state-A");
    const s = await be.takeSnapshot({ name: "app-ha", host: h1 }, { includeMemory: true, repository: "primary" });
    cs.setHostState(h1, "Down");
    expect(cs.vms.get(info.id)!.state).toBe("Stopped");
    const out = await be.restoreSnapshot(s, h2, { repository: "primary" });
    expect(out.recovery.path).toBe("warm");
    expect(cs.vms.get(info.id)).toMatchObject({ state: "Running", hostid: h2, guestMemory: "state-A" });
  });

  test("refuses while the original is Running on a host that is Up, unless forced", async () => {
    const [h1, h2] = cs.hostIds;
    const info = await runningVm("app-busy", h1);
    const s = await be.takeSnapshot({ name: "app-busy", host: h1 }, { includeMemory: true, repository: "primary" });
    const e = await be.restoreSnapshot(s, h2, { repository: "primary" }).catch((x) => x);
    expect(e).toBeInstanceOf(RecoveryRefusedError);
    expect(String(e.message)).toMatch(/still Running on host kvm1 .* which is Up; refusing/);
    expect(cs.vms.get(info.id)!.hostid).toBe(h1);
    const forced = await be.restoreSnapshot(s, h2, { repository: "primary", force: true } as never);
    expect(forced.recovery.path).toBe("warm");
    expect(cs.vms.get(info.id)!.hostid).toBe(h2);
  });

  test("refuses a target host that is not Up", async () => {
    const [h1, h2] = cs.hostIds;
    await runningVm("app-tgt", h1);
    const s = await be.takeSnapshot({ name: "app-tgt", host: h1 }, { includeMemory: true, repository: "primary" });
    cs.setHostState(h1, "Down");
    cs.setHostState(h2, "Disconnected");
    await expect(be.restoreSnapshot(s, h2, { repository: "primary" })).rejects.toThrow(/onto host .*: it is Disconnected\/Enabled/);
  });

  test("cold recovery when primary storage is gone: a new VM from the backed-up snapshot on another host", async () => {
    const [h1, , h3] = cs.hostIds;
    const info = await runningVm("app2", h1, "secondary");
    cs.writeGuestDisk(info.id, "disk: version 1");
    cs.writeGuestMemory(info.id, "memory at snapshot");
    const s = await be.takeSnapshot({ name: "app2", host: h1 }, { includeMemory: true, repository: "secondary" });
    expect(s.complete).toBe(true);
    cs.writeGuestDisk(info.id, "disk: version 2 (lost)");

    cs.losePrimaryStorage();
    cs.setHostState(h1, "Down");
    // CloudStack keeps the pool Up: nothing tells that the VM snapshot on primary is unusable.
    expect(cs.pools.get(cs.poolIds[0])!.state).toBe("Up");
    expect(await be.verifySnapshot(s, "secondary")).toBe(true);

    const out = await be.restoreSnapshot(s, h3, { repository: "secondary" });
    expect(out.recovery.path).toBe("cold");
    expect(out.recovery.reason).toMatch(/warm recovery failed for a storage reason \(startVirtualMachine failed \(533/);
    expect(out).toMatchObject({ name: "app2", host: h3, state: "running" });
    expect(out.id).not.toBe(info.id);

    const vm = cs.vmByName("app2")!;
    expect(vm.id).toBe(out.id);
    expect(vm).toMatchObject({ state: "Running", hostid: h3, guestMemory: "" }); // booted: memory is lost
    expect(cs.guestDisk(vm.id)).toBe("disk: version 1"); // disk is the snapshot's
    expect(cs.rootVolume(vm.id).storageid).toBe(cs.poolIds[1]);
    // The unusable original is stopped, renamed and no longer protected; the new VM carries the protection record.
    const old = cs.vms.get(info.id)!;
    expect(old.state).toBe("Stopped");
    expect(old.name).toMatch(/^app2-lost-/);
    expect((await be.listProtectedVms(h3)).map((v) => v.id)).toEqual([out.id]);
    expect((await be.findVm("app2", [h3]))?.protection?.policy.repository).toBe("secondary");

    const deploys = cs.commandCount("deployVirtualMachine");
    const again = await be.restoreSnapshot(s, h3, { repository: "secondary" });
    expect(again.recovery).toMatchObject({ path: "cold", alreadyRecovered: true });
    expect(again.id).toBe(out.id);
    expect(cs.commandCount("deployVirtualMachine")).toBe(deploys);
  });

  test("with only primary-storage snapshots and primary storage lost, recovery says why it cannot proceed", async () => {
    const [h1, h2] = cs.hostIds;
    await runningVm("app3", h1, "primary");
    const s = await be.takeSnapshot({ name: "app3", host: h1 }, { includeMemory: true, repository: "primary" });
    cs.losePrimaryStorage();
    cs.setHostState(h1, "Down");
    await expect(be.restoreSnapshot(s, h2, { repository: "primary" })).rejects.toThrow(
      /warm recovery of app3 failed for a storage reason .*533.* and there is no cold path: no backed-up copy/,
    );
    // Nothing half-done is left: the VM is not running anywhere, and no `restoring` tag claims a recovery in progress.
    const vm = cs.vmByName("app3")!;
    expect(vm.state).toBe("Stopped");
    expect(Object.keys(cs.tagsOf(vm.id)).filter((k) => k.startsWith("protected-vm.restor"))).toEqual([]);
  });

  test("a drill restores under another name by the cold path and leaves the original alone", async () => {
    const [h1, h2] = cs.hostIds;
    const info = await runningVm("app4", h1, "secondary");
    cs.writeGuestDisk(info.id, "drill disk");
    const s = await be.takeSnapshot({ name: "app4", host: h1 }, { includeMemory: true, repository: "secondary" });
    const out = await be.restoreSnapshot(s, h2, { repository: "secondary", name: "app4-drill" });
    expect(out.recovery.path).toBe("cold");
    expect(cs.vmByName("app4-drill")).toMatchObject({ state: "Running", hostid: h2 });
    expect(cs.guestDisk(out.id)).toBe("drill disk");
    expect(cs.vms.get(info.id)).toMatchObject({ name: "app4", state: "Running", hostid: h1 });
  });
});

describe("secrets", () => {
  test("neither the secret nor the API key appears in logs, errors, or anything that would go into Pulumi state", async () => {
    const [h1, h2] = cs.hostIds;
    const info = await runningVm("app-sec", h1, "secondary");
    const s = await be.takeSnapshot({ name: "app-sec", host: h1 }, { includeMemory: true, repository: "secondary" });
    cs.setHostState(h1, "Down");
    const out = await be.restoreSnapshot(s, h2, { repository: "secondary" });
    const state = JSON.stringify({ info, s, out, list: await be.listSnapshots("app-sec", "secondary"), backend: be });

    const wrongSecret = "a-WRONG-secret-value-" + Date.now();
    const badLog = captureLog();
    const bad = backendFor(cs, badLog, { secretKey: wrongSecret });
    const e = await bad.findVm("app-sec", [h2]).catch((x) => x);
    expect(e).toBeInstanceOf(CloudStackError);
    expect(e.errorCode).toBe(401);

    const everything = [state, ...log.lines, ...badLog.lines, e.message, e.stack, JSON.stringify(e), inspect(e), inspect(be), inspect(bad)].join("\n");
    expect(log.lines.length).toBeGreaterThan(10); // debug logging was on the whole time
    for (const secret of [cs.secretKey, cs.apiKey, wrongSecret]) expect(everything).not.toContain(secret);
    expect(everything).not.toMatch(/signature=(?!<redacted>)/);
  });
});

describe("tags after a lost answer", () => {
  test("createTags whose answer was dropped ends with the tags in place (lookup first; a duplicate CloudStack refuses is recognised)", async () => {
    const [h1] = cs.hostIds;
    const info = await be.defineVm(spec("app-tag-drop"), h1);
    cs.dropNextConnection({ command: "createTags", afterProcessing: true });
    cs.jobDurationMs = 150; // the lost request's job is still running when we look
    await be.setProtection({ name: "app-tag-drop", host: h1 }, protection("primary", h1, [cs.hostIds[1]]));
    expect((await be.findVm("app-tag-drop", [h1]))?.protection?.primaryHost).toBe(h1);
    expect(cs.tagsOf(info.id)["protected-vm"]).toBe("true");
  });
});
