/**
 * recover() falls back: a snapshot that is not self-contained is skipped before anything is
 * written, a restore that fails is cleaned up on the target, and the next older verified snapshot
 * is tried; the report lists every attempt. Plus the self-containment check on real qcow2 files.
 */
import { execFileSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import type { Backend, Restorability } from "../../hypervisor/backend";
import type { HostRef, SnapshotRecord, VmInfo, VmRef } from "../../core/model";
import { withPolicyDefaults } from "../../core/policy";
import { recover, RecoveryFailed, RecoveryRefused } from "../../ops/recover";
import { checkSnapshotRestorable, readDiskHeader } from "../../hypervisor/libvirt/restorable";
import { SnapshotRepository } from "../../repository/repository";

const A = "test:///a/default";
const B = "test:///b/default";

/** Snapshots s3 (newest) .. s1; each can be made unverifiable, unrestorable, or to crash on restore. */
class FakeBackend implements Partial<Backend> {
  readonly kind = "libvirt" as const;
  vms = new Map<string, VmInfo>(); // host|name
  alive = new Map<HostRef, boolean>([[A, false], [B, true]]);
  unverified = new Set<string>();
  unrestorable = new Set<string>();
  crashOnRestore = new Set<string>();
  restored: string[] = [];
  deleted: string[] = [];
  snapshots: SnapshotRecord[] = ["s3", "s2", "s1"].map((id, i) => ({
    id, vm: "prod", backend: "libvirt", host: A, createdAt: new Date(Date.now() - (i + 1) * 60_000).toISOString(),
    includesMemory: true, bytes: 1, storedBytes: 1, complete: true, location: "x",
  }));
  protection = { version: 1 as const, backend: "libvirt" as const, primaryHost: A, recoveryHosts: [B], policy: withPolicyDefaults({ repository: "/r" }) };

  async hostAlive(h: HostRef) { return this.alive.get(h) ?? false; }
  async findVm(name: string, hosts: HostRef[]) { for (const h of hosts) { const v = this.vms.get(`${h}|${name}`); if (v) return v; } return undefined; }
  async listSnapshots() { return this.snapshots; }
  async verifySnapshot(s: SnapshotRecord) { return !this.unverified.has(s.id); }
  async checkRestorable(s: SnapshotRecord): Promise<Restorability> {
    return this.unrestorable.has(s.id) ? { ok: false, reason: "its disk's backing file is on host a" } : { ok: true };
  }
  async restoreSnapshot(s: SnapshotRecord, host: HostRef, o: { name?: string }) {
    const name = o.name ?? s.vm;
    this.restored.push(s.id);
    // A crash on restore leaves a defined, crashed domain (and its files) behind on the target.
    const info: VmInfo = { name, id: "uuid", host, state: this.crashOnRestore.has(s.id) ? "crashed" : "running", memoryMiB: 128, vcpus: 1, protection: this.protection };
    this.vms.set(`${host}|${name}`, info);
    return info;
  }
  async deleteVm(vm: VmRef) { if (this.vms.delete(`${vm.host}|${vm.name}`)) this.deleted.push(`${vm.name}@${vm.host}`); }
  // Like libvirt: a failed restore left a domain and files of its own, removed like a VM.
  async discardFailedRestore(vm: VmRef) { return this.deleteVm(vm); }
  async setProtection(vm: VmRef, p: any) { this.vms.get(`${vm.host}|${vm.name}`)!.protection = p; }
}

const opts = { repository: "/r", hosts: [A, B], verifyMs: 1 };

test("an unrestorable newest snapshot is skipped, a crashing one cleaned up, and the next older one runs; every attempt is reported", async () => {
  const b = new FakeBackend();
  b.unrestorable.add("s3");
  b.crashOnRestore.add("s2");
  const r = await recover(b as unknown as Backend, "prod", opts);
  expect(r.snapshotId).toBe("s1");
  expect(r.to).toBe(B);
  // s3 was never restored (judged before anything was written); s2 was, and was removed.
  expect(b.restored).toEqual(["s2", "s1"]);
  expect(b.deleted).toEqual([`prod@${B}`]);
  expect(b.vms.get(`${B}|prod`)?.state).toBe("running");
  expect(r.attempts.map((a) => [a.snapshotId, a.outcome])).toEqual([["s3", "unrestorable"], ["s2", "failed"], ["s1", "recovered"]]);
  expect(r.attempts[0].detail).toMatch(/backing file is on host a/);
  expect(r.attempts[1]).toMatchObject({ host: B, cleanedUp: true });
  expect(r.events.some((e) => e.step === "cleanup")).toBe(true);
  expect(b.vms.get(`${B}|prod`)?.protection?.lastRecovery?.snapshotId).toBe("s1");
});

test("when every snapshot fails the error is a failure (exit 1) carrying every attempt, and nothing is left on the target", async () => {
  const b = new FakeBackend();
  b.unverified.add("s3");
  b.crashOnRestore.add("s2");
  b.crashOnRestore.add("s1");
  const err = await recover(b as unknown as Backend, "prod", opts).catch((e) => e);
  expect(err).toBeInstanceOf(RecoveryFailed);
  expect(err.exitCode).toBe(1);
  expect(err.report.attempts.map((a: any) => a.outcome)).toEqual(["unverified", "failed", "failed"]);
  expect([...b.vms.keys()]).toEqual([]);
});

test("nothing usable at all is a refusal (exit 3); an explicit --snapshot is not replaced by another", async () => {
  const none = new FakeBackend();
  for (const s of ["s1", "s2", "s3"]) none.unrestorable.add(s);
  const refused = await recover(none as unknown as Backend, "prod", opts).catch((e) => e);
  expect(refused).toBeInstanceOf(RecoveryRefused);
  expect(refused.report.attempts).toHaveLength(3);

  const b = new FakeBackend();
  b.crashOnRestore.add("s2");
  const err = await recover(b as unknown as Backend, "prod", { ...opts, snapshotId: "s2" }).catch((e) => e);
  expect(err).toBeInstanceOf(RecoveryFailed);
  expect(b.restored).toEqual(["s2"]);
});

test("a domain already running on the target under the restore name is refused, never cleaned up", async () => {
  const b = new FakeBackend();
  b.vms.set(`${B}|copy`, { name: "copy", id: "u", host: B, state: "running", memoryMiB: 1, vcpus: 1 });
  const err = await recover(b as unknown as Backend, "prod", { ...opts, asName: "copy" }).catch((e) => e);
  expect(err).toBeInstanceOf(RecoveryRefused);
  expect(b.deleted).toEqual([]);
  expect(b.vms.get(`${B}|copy`)?.state).toBe("running");
});

describe("self-contained snapshot check on real qcow2 images", () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "pv-restorable-"));
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
  const img = (name: string, ...args: string[]) => {
    const p = path.join(dir, name);
    execFileSync("qemu-img", ["create", "-q", "-f", "qcow2", ...args, p, "16M"]);
    return p;
  };

  test("a qcow2 overlay names its backing file; a plain qcow2 and a raw image do not", () => {
    const base = img("base.qcow2");
    const overlay = img("overlay.qcow2", "-b", base, "-F", "qcow2");
    expect(readDiskHeader(fs.readFileSync(base))).toEqual({ kind: "qcow2", backingFile: null, externalDataFile: false });
    expect(readDiskHeader(fs.readFileSync(overlay))).toEqual({ kind: "qcow2", backingFile: base, externalDataFile: false });
    expect(readDiskHeader(Buffer.alloc(4096))).toEqual({ kind: "not-qcow2" });
    expect(readDiskHeader(fs.readFileSync(overlay).subarray(0, 50))).toMatchObject({ kind: "need-bytes" });
  });

  test("checkRestorable reads the stored disk's header from the repository and names the outside backing file", async () => {
    const repoDir = path.join(dir, "repo");
    const repo = new SnapshotRepository(repoDir);
    const store = async (disk: string) => {
      const p = await repo.begin("vm1", { host: A, createdAt: new Date(), startedAt: new Date(), includesMemory: false });
      await p.addFile("disk:vda", disk);
      return p.commit();
    };
    const base = img("base2.qcow2");
    const good = await store(base);
    const bad = await store(img("overlay2.qcow2", "-b", base, "-F", "qcow2"));
    expect(await checkSnapshotRestorable(repoDir, good)).toEqual({ ok: true });
    const verdict = await checkSnapshotRestorable(repoDir, bad);
    expect(verdict.ok).toBe(false);
    expect(!verdict.ok && verdict.reason).toContain(base);
  });
});
