/**
 * Issue 13, point by point, against the corrected loopback CloudStack: lookup by name, storage
 * loss CloudStack never reports, honest recovery state, no recovery from hosts that are not Down,
 * a lost createTags answer, and the smaller points (retries, drill copies, Disconnected hosts).
 * Recovery runs through ops/recover.ts (the one state machine) with the CloudStack backend.
 */
import { FakeCloudStack } from "../support/cloudstackServer";
import { CapturedLog, backendFor, captureLog, clientFor, startCloud } from "../support/cloudstack/harness";
import { runCli } from "../support/cli";
import { CloudStackBackend } from "../../hypervisor/cloudstack/backend";
import { CloudStackError } from "../../hypervisor/cloudstack/errors";
import { RESTORING_KEY } from "../../hypervisor/cloudstack/tags";
import { recover, RecoveryFailed, type RecoveryAttempt } from "../../ops/recover";
import { RefusedError, exitCodeOf } from "../../core/errors";
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

type Repo = "primary" | "secondary";

function spec(name: string, repository: Repo, primary = cs.hostIds[0]): VmSpec {
  const protection: ProtectionRecord = {
    version: 1,
    backend: "cloudstack",
    primaryHost: primary,
    recoveryHosts: cs.hostIds.filter((h) => h !== primary),
    policy: withPolicyDefaults({ repository, keepLast: 2 }),
  };
  return { name, memoryMiB: 1024, vcpus: 1, cloudstack: { zoneId: cs.zoneId, serviceOfferingId: cs.offeringId, templateId: cs.templateId }, protection };
}

/** A protected VM running on the first host, with `memory` in its RAM and `disk` on its disk, snapshotted once. */
async function protectedWithSnapshot(name: string, repository: Repo, memory = "counter=7", disk = "disk at snapshot") {
  const [h1] = cs.hostIds;
  const info = await be.defineVm(spec(name, repository), h1);
  await be.startVm({ name, host: h1 });
  cs.writeGuestMemory(info.id, memory);
  cs.writeGuestDisk(info.id, disk);
  const snap = await be.takeSnapshot({ name, host: h1 }, { includeMemory: true, repository });
  cs.writeGuestMemory(info.id, "after the snapshot (lost)");
  return { info, snap };
}

const hosts = () => cs.hostIds.slice(0, 2);
const run = (name: string, repository: Repo, extra: { force?: boolean } = {}) => recover(be, name, { repository, hosts: hosts(), verifyMs: 10, ...extra });
const running = (name: string) => cs.vmsByName(name).filter((v) => v.state === "Running");

describe("1. lookup by name", () => {
  test.each(["web_1", "a.b", "1web"])("a VM named %s (not a host name) is found again: defining it twice deploys one VM", async (name) => {
    const [h1] = cs.hostIds;
    await be.defineVm(spec(`${name}0`, "primary"), h1); // a neighbour whose name contains this one
    const first = await be.defineVm(spec(name, "primary"), h1);
    await be.startVm({ name, host: h1 });
    const second = await be.defineVm(spec(name, "primary"), h1);
    expect(second.id).toBe(first.id);
    expect(cs.vmsByName(name)).toHaveLength(1);
    expect(cs.vms.get(first.id)!.name).not.toBe(name); // CloudStack gave it a generated host name
    expect(await be.findVm(name, [h1])).toMatchObject({ id: first.id, name, state: "running" });
    expect((await be.listProtectedVms(h1)).map((v) => v.name).sort()).toEqual([name, `${name}0`].sort());
  });

  test("a host-name VM is matched exactly (web1 is not web10)", async () => {
    const [h1] = cs.hostIds;
    const ten = await be.defineVm(spec("web10", "primary"), h1);
    const one = await be.defineVm(spec("web1", "primary"), h1);
    expect(one.id).not.toBe(ten.id);
    expect((await be.findVm("web1", [h1]))?.id).toBe(one.id);
  });
});

describe("2. primary storage loss CloudStack never reports", () => {
  test("an NFS outage during recovery: the warm start fails (533), recovery falls back to cold from secondary storage, reports cold - and cold again on a re-run", async () => {
    const [h1, h2] = cs.hostIds;
    const { info } = await protectedWithSnapshot("nfs-app", "secondary");
    cs.losePrimaryStorage();
    cs.setHostState(h1, "Down");
    expect(cs.pools.get(cs.poolIds[0])!.state).toBe("Up"); // what CloudStack shows

    const rep = await run("nfs-app", "secondary");
    expect(rep).toMatchObject({ path: "cold", alreadyRecovered: false, to: h2 });
    expect(rep.events.map((e) => e.detail).join("\n")).toMatch(/cold path: warm recovery failed for a storage reason \(startVirtualMachine failed \(533/);
    // What a user checks: one copy runs, on h2, booted from the snapshot's disk on a pool that works.
    const [vm] = running("nfs-app");
    expect(running("nfs-app")).toHaveLength(1);
    expect(vm).toMatchObject({ hostid: h2, guestMemory: "" });
    expect(vm.id).not.toBe(info.id);
    expect(cs.guestDisk(vm.id)).toBe("disk at snapshot");
    expect(cs.rootVolume(vm.id).storageid).toBe(cs.poolIds[1]);
    // The first attempt is cleaned up: the original is stopped, renamed, and carries no protection or restore tags.
    expect(cs.vms.get(info.id)).toMatchObject({ state: "Stopped" });
    expect(Object.keys(cs.tagsOf(info.id)).filter((k) => k.startsWith("protected-vm"))).toEqual([]);
    expect(cs.tagsOf(vm.id)).toMatchObject({ "protected-vm.restore-path": "cold", "protected-vm.restore-to": h2 });
    expect(cs.tagsOf(vm.id)[RESTORING_KEY]).toBeUndefined();

    const deploys = cs.commandCount("deployVirtualMachine");
    const again = await run("nfs-app", "secondary");
    expect(again).toMatchObject({ path: "cold", alreadyRecovered: true, to: h2 });
    expect(cs.commandCount("deployVirtualMachine")).toBe(deploys);
    expect((await be.findVm("nfs-app", [h2]))?.recovery).toMatchObject({ inProgress: false, path: "cold" });
  });

  test("the revert fails for a storage reason (530): the VM that booted without its memory is stopped and recovery goes cold", async () => {
    const [h1, h2] = cs.hostIds;
    const { info } = await protectedWithSnapshot("rev-app", "secondary");
    cs.setHostState(h1, "Down");
    cs.failNextJob({ command: "revertToVMSnapshot", code: 530, text: "Failed to revert Instance to Snapshot: primary storage nfs-primary-1 is not accessible" });
    const rep = await run("rev-app", "secondary");
    expect(rep).toMatchObject({ path: "cold", to: h2 });
    expect(running("rev-app")).toHaveLength(1);
    expect(running("rev-app")[0].id).not.toBe(info.id);
    expect(cs.vms.get(info.id)!.state).toBe("Stopped");
  });

  test("verifySnapshot and recovery agree: neither reads pool state (a pool lookup that fails changes nothing)", async () => {
    const { snap } = await protectedWithSnapshot("agree-app", "primary");
    cs.failNextRequest({ command: "listStoragePools", code: 530 });
    expect(await be.verifySnapshot(snap, "primary")).toBe(true);
    cs.setHostState(cs.hostIds[0], "Down");
    expect(await run("agree-app", "primary")).toMatchObject({ path: "warm" });
    expect(cs.commandCount("listStoragePools")).toBe(0);
  });
});

describe("3. honest recovery state", () => {
  test("a revert that fails (not for storage) leaves the recovery unfinished; the next run finishes it from memory instead of declaring it done", async () => {
    const [h1, h2] = cs.hostIds;
    const { info } = await protectedWithSnapshot("half-app", "primary", "counter=42");
    cs.setHostState(h1, "Down");
    cs.failNextJob({ command: "revertToVMSnapshot", code: 530, text: "Unable to revert: the agent did not answer in time" });
    const e = await run("half-app", "primary").catch((x) => x);
    // The one recovery state machine reports the failed attempt with CloudStack's own answer.
    expect(e).toBeInstanceOf(RecoveryFailed);
    expect(exitCodeOf(e)).toBe(1);
    expect(e.attempts.map((a: RecoveryAttempt) => [a.outcome, a.detail])).toEqual([["failed", expect.stringMatching(/Unable to revert: the agent did not answer in time/)]]);
    // The VM runs on h2 but without its memory: that is not a recovery.
    expect(cs.vms.get(info.id)).toMatchObject({ state: "Running", hostid: h2, guestMemory: "" });
    expect((await be.findVm("half-app", [h2]))?.recovery).toMatchObject({ inProgress: true, path: "warm", to: h2 });

    const rep = await run("half-app", "primary");
    expect(rep).toMatchObject({ path: "warm", alreadyRecovered: false, to: h2 });
    expect(rep.events[0].detail + rep.events[1].detail).toMatch(/interrupted recovery .* finishing it/);
    expect(cs.vms.get(info.id)).toMatchObject({ state: "Running", hostid: h2, guestMemory: "counter=42" });
    expect(cs.tagsOf(info.id)[RESTORING_KEY]).toBeUndefined();
    expect(await run("half-app", "primary")).toMatchObject({ path: "warm", alreadyRecovered: true });
  });

  test("a VM that CloudStack's HA restarted on another host is reported as booted (cold), not as a warm recovery", async () => {
    const [h1, h2] = cs.hostIds;
    cs.stopVmsOnHostDown = true;
    const { info } = await protectedWithSnapshot("ha-app", "primary");
    cs.setHostState(h1, "Down");
    await clientFor(cs).callAsync("startVirtualMachine", { id: info.id, hostid: h2 }); // what HA does
    const rep = await run("ha-app", "primary");
    expect(rep).toMatchObject({ alreadyRecovered: true, path: "cold", to: h2 });
    expect(rep.events.at(-1)!.detail).toMatch(/without a recovery by protected-vm/);
    expect(cs.commandCount("revertToVMSnapshot")).toBe(0);
  });

  test("an interrupted cold recovery (the new VM deployed but not started) is finished by the next run, with no second VM", async () => {
    const [h1, h2] = cs.hostIds;
    const { snap } = await protectedWithSnapshot("cold-app", "secondary");
    cs.setHostState(h1, "Down");
    cs.failNextJob({ command: "startVirtualMachine", code: 530, text: "Unable to start: the agent did not answer in time" });
    const e = await be.restoreSnapshot(snap, h2, { repository: "secondary", path: "cold" } as never).catch((x) => x);
    expect(e).toBeInstanceOf(CloudStackError);
    expect(cs.vmsByName("cold-app").map((v) => v.state)).toEqual(["Stopped"]);
    expect((await be.findVm("cold-app", [h2]))?.recovery).toMatchObject({ inProgress: true, path: "cold", snapshotId: snap.id });

    const deploys = cs.commandCount("deployVirtualMachine");
    const rep = await run("cold-app", "secondary");
    expect(rep).toMatchObject({ path: "cold", alreadyRecovered: false, to: h2, snapshotId: snap.id });
    expect(cs.commandCount("deployVirtualMachine")).toBe(deploys);
    expect(running("cold-app")).toHaveLength(1);
    expect(cs.guestDisk(running("cold-app")[0].id)).toBe("disk at snapshot");
  });
});

describe("4. recover only from a host CloudStack reports Down", () => {
  test.each(["Disconnected", "Alert"] as const)("refused (exit 3) while the host is only %s, saying why; nothing is started", async (state) => {
    const [h1] = cs.hostIds;
    const { info } = await protectedWithSnapshot("dis-app", "primary");
    cs.setHostState(h1, state);
    const starts = cs.commandCount("startVirtualMachine");
    const e = await run("dis-app", "primary").catch((x) => x);
    expect(e).toBeInstanceOf(RefusedError);
    expect(exitCodeOf(e)).toBe(3);
    expect(e.message).toMatch(new RegExp(`which CloudStack reports ${state}, not Down.*--force`));
    expect(cs.vms.get(info.id)).toMatchObject({ state: "Running", hostid: h1 });
    expect(cs.commandCount("startVirtualMachine")).toBe(starts);
    expect(cs.tagsOf(info.id)[RESTORING_KEY]).toBeUndefined();

    cs.setHostState(h1, "Down"); // CloudStack's investigators confirmed it
    expect(await run("dis-app", "primary")).toMatchObject({ path: "warm", to: cs.hostIds[1] });
    expect(cs.vms.get(info.id)).toMatchObject({ guestMemory: "counter=7" });
  });

  test("force recovers from a Disconnected host (the caller fenced it)", async () => {
    const [h1, h2] = cs.hostIds;
    const { info } = await protectedWithSnapshot("force-app", "primary");
    cs.setHostState(h1, "Disconnected");
    expect(await run("force-app", "primary", { force: true })).toMatchObject({ path: "warm", to: h2 });
    expect(cs.vms.get(info.id)).toMatchObject({ state: "Running", hostid: h2, guestMemory: "counter=7" });
  });

  test("through the CLI: `recover --backend cloudstack` exits 3 while the host is Disconnected (needs the build in dist/)", async () => {
    const [h1, h2] = cs.hostIds;
    await protectedWithSnapshot("cli-app", "primary");
    cs.setHostState(h1, "Disconnected");
    const env = { CLOUDSTACK_API_URL: cs.url, CLOUDSTACK_API_KEY: cs.apiKey, CLOUDSTACK_SECRET_KEY: cs.secretKey, CLOUDSTACK_ZONE: cs.zoneId };
    const r = await runCli(["recover", "cli-app", "--backend", "cloudstack", "--hosts", `${h1},${h2}`, "--repository", "primary", "--json"], { env });
    expect(r.code).toBe(3);
    expect(r.stderr).toMatch(/Disconnected, not Down/);
    expect(cs.vmByName("cli-app")).toMatchObject({ state: "Running", hostid: h1 });
  });
});

describe("5. a lost answer on createTags", () => {
  test("a createTags whose answer was lost succeeds: the re-sent request's 530 'already on' is recognised and the tags are in place", async () => {
    const [h1] = cs.hostIds;
    const info = await be.defineVm(spec("tag-app", "primary"), h1);
    await be.setProtection({ name: "tag-app", host: h1 }, { ...spec("x", "primary").protection!, recoveryHosts: [cs.hostIds[2]] }); // a record that differs: tags are rewritten
    const before = cs.commandCount("createTags");
    // The lost request's job is still running when the lookup looks (1.5 s), so the request is
    // sent again, and its job then finds the tags there: CloudStack's 530 "tag ... already on".
    cs.jobDurationMs = 1500;
    cs.dropNextConnection({ command: "createTags", afterProcessing: true });
    await be.setProtection({ name: "tag-app", host: h1 }, spec("tag-app", "primary").protection!);
    expect(cs.commandCount("createTags") - before).toBe(2);
    expect((await be.findVm("tag-app", [h1]))?.protection?.primaryHost).toBe(h1);
    expect(cs.tagsOf(info.id)["protected-vm"]).toBe("true");
  });
});

describe("6. retries, drill copies, Disconnected hosts", () => {
  test("a deterministic 530 on a create (vmsnapshot.max reached) is not retried", async () => {
    cs.vmSnapshotMax = 1;
    await protectedWithSnapshot("max-app", "primary");
    const before = cs.commandCount("createVMSnapshot");
    const e = (await be.takeSnapshot({ name: "max-app", host: cs.hostIds[0] }, { includeMemory: true, repository: "primary" }).catch((x) => x)) as CloudStackError;
    expect(e.errorCode).toBe(530);
    expect(cs.commandCount("createVMSnapshot") - before).toBe(1);
  });

  test("a bare HTTP 500 is retried for a read, not for a create", async () => {
    await protectedWithSnapshot("http-app", "primary");
    cs.failNextHttp({ command: "listVirtualMachines", status: 500 });
    expect((await be.findVm("http-app", [cs.hostIds[0]]))?.state).toBe("running");
    expect(log.lines.some((l) => /listVirtualMachines attempt 1 failed \(HTTP\); retrying/.test(l))).toBe(true);
    const before = cs.commandCount("createVMSnapshot");
    cs.failNextHttp({ command: "createVMSnapshot", status: 500 });
    await expect(be.takeSnapshot({ name: "http-app", host: cs.hostIds[0] }, { includeMemory: true, repository: "primary" })).rejects.toThrow(/HTTP 500/);
    expect(cs.commandCount("createVMSnapshot") - before).toBe(1);
  });

  test("a drill copy does not inherit the protection record and is not listed as protected", async () => {
    const [h1, h2] = cs.hostIds;
    const { snap } = await protectedWithSnapshot("drill-app", "secondary");
    const copy = await be.restoreSnapshot(snap, h2, { repository: "secondary", name: "drill-app-copy" });
    expect(copy).toMatchObject({ name: "drill-app-copy", host: h2, state: "running" });
    expect(copy.protection).toBeUndefined();
    expect((await be.listProtectedVms(h2)).map((v) => v.name)).toEqual([]);
    expect((await be.listProtectedVms(h1)).map((v) => v.name)).toEqual(["drill-app"]);
    expect(cs.tagsOf(copy.id)["protected-vm"]).toBeUndefined();
  });

  test("listProtectedVms and findVm agree on a VM whose host is Disconnected: unknown", async () => {
    const [h1] = cs.hostIds;
    await protectedWithSnapshot("agree2-app", "primary");
    cs.setHostState(h1, "Disconnected");
    expect((await be.findVm("agree2-app", [h1]))?.state).toBe("unknown");
    expect((await be.listProtectedVms(h1)).map((v) => [v.name, v.state])).toEqual([["agree2-app", "unknown"]]);
  });
});
