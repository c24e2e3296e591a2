/**
 * Issue 14, point 1 on the lab: the newest snapshot verifies but cannot be restored (a take
 * killed between the external snapshot and the block commit left the disk as an overlay, so the
 * next snapshot stored that overlay, whose backing file is host A's disk). Host A dies.
 *  - with the self-containment check bypassed, the restore of that snapshot really fails on B:
 *    recover cleans B up and resumes from the previous snapshot (both attempts reported);
 *  - `protected-vm recover` (the real check) skips it without writing anything and resumes from
 *    the previous one; the guest's counter continues; B's pool holds only the VM's own files,
 *    owned by B's user, mode 0600.
 */
import * as fs from "fs";
import * as path from "path";
import type { Backend } from "../../hypervisor/backend";
import { LibvirtBackend } from "../../hypervisor/libvirt/backend";
import { ExecVirsh } from "../../hypervisor/libvirt/virsh";
import { withPolicyDefaults } from "../../core/policy";
import { recover } from "../../ops/recover";
import { runCli, runId } from "../support/cli";
import { failHost, reviveHosts } from "../../lab/hostFailure";
import { LabState, cleanupDomains, counters, ensureLab, guestCmdline, labAvailable, lastCounter, removeFiles, waitForCounter } from "../../lab/lab";

const describeLab = labAvailable() ? describe : describe.skip;

describeLab("lab: recovery falls back past an unrestorable snapshot", () => {
  const vm = `pvt-fb-${runId()}`;
  const virsh = new ExecVirsh();
  const backend = new LibvirtBackend({ pool: "pvlab", virsh });
  let lab: LabState;
  const files: string[] = [];
  const ownFiles = (dir: string) => fs.readdirSync(dir).filter((f) => f.startsWith(vm)).sort();

  beforeAll(async () => {
    lab = await ensureLab();
  });

  afterAll(async () => {
    if (!lab) return;
    await reviveHosts().catch(() => undefined);
    for (const h of [lab.hosts.a, lab.hosts.b]) {
      await backend.deleteVm({ name: vm, host: h.uri }).catch(() => undefined);
      await cleanupDomains(h.uri, vm, virsh);
      removeFiles(...ownFiles(h.storageDir).map((f) => path.join(h.storageDir, f)));
    }
    removeFiles(...files);
    fs.rmSync(path.join(lab.repository, "vms", vm), { recursive: true, force: true });
  });

  test("skips it, cleans up a failed attempt, resumes from the previous snapshot with the counter continuing", async () => {
    const A = lab.hosts.a;
    const B = lab.hosts.b;
    const protection = { version: 1 as const, backend: "libvirt" as const, primaryHost: A.uri, recoveryHosts: [B.uri], pool: "pvlab", policy: withPolicyDefaults({ repository: lab.repository }) };
    await backend.defineVm(
      { name: vm, memoryMiB: 128, vcpus: 1, disk: { sizeMiB: 32, pool: "pvlab" }, boot: { kernel: lab.guest.kernel, initrd: lab.guest.initrd, cmdline: guestCmdline({ mem: 8 }) }, protection },
      A.uri,
      { create: true },
    );
    await backend.startVm({ name: vm, host: A.uri });
    const consoleA = path.join(A.storageDir, `${vm}.console.log`);
    await waitForCounter(consoleA, 3, 180_000);

    // s1: a good snapshot. The guest state it holds lies between the counters seen before and after the take.
    const beforeS1 = lastCounter(consoleA)!;
    // The whole-file path (the fallback): the differential path repairs such a chain before it
    // takes, so only the fallback can still store a disk that is an overlay of host a's disk.
    const s1 = await backend.takeSnapshot({ name: vm, host: A.uri }, { includeMemory: true, repository: lab.repository, method: "whole-files" });
    const atS1 = lastCounter(consoleA)!;
    await waitForCounter(consoleA, atS1 + 3, 60_000);

    // A take killed after its external snapshot, before the block commit: the disk is now an overlay.
    const leftover = path.join(A.storageDir, `${vm}.killed-take.overlay.qcow2`);
    files.push(leftover);
    await virsh.run(A.uri, ["snapshot-create-as", vm, "--name", "killed-take", "--no-metadata", "--atomic", "--disk-only", "--diskspec", `vda,snapshot=external,file=${leftover}`]);
    // s2: verifies, but its disk is that overlay, whose backing file is A's disk.
    const beforeS2 = lastCounter(consoleA)!;
    const s2 = await backend.takeSnapshot({ name: vm, host: A.uri }, { includeMemory: true, repository: lab.repository, method: "whole-files" });
    expect(await backend.verifySnapshot(s2, lab.repository)).toBe(true);
    const verdict = await backend.checkRestorable(s2, lab.repository);
    expect(verdict.ok).toBe(false);
    expect(!verdict.ok && verdict.reason).toContain(path.join(A.storageDir, `${vm}.qcow2`));
    expect(await backend.checkRestorable(s1, lab.repository)).toEqual({ ok: true });

    await failHost(A);

    // 1. The check bypassed: the restore of s2 is really attempted on B, fails, is cleaned up.
    const unchecked = Object.assign(Object.create(backend) as LibvirtBackend, { checkRestorable: async () => ({ ok: true as const }) }) as Backend;
    const forced = await recover(unchecked, vm, { repository: lab.repository, hosts: [A.uri, B.uri], verifyMs: 3000 });
    console.log(`recover with the check bypassed:\n${forced.events.map((e) => `  [${e.step}] ${e.detail}`).join("\n")}`);
    expect(forced.attempts.map((a) => [a.snapshotId, a.outcome])).toEqual([[s2.id, "failed"], [s1.id, "recovered"]]);
    expect(forced.attempts[0]).toMatchObject({ host: B.uri, cleanedUp: true });
    expect(forced.to).toBe(B.uri);
    // B holds the recovered VM's own files only: nothing of the failed attempt (no staging, no memory image).
    expect(ownFiles(B.storageDir)).toEqual([`${vm}.console.log`, `${vm}.qcow2`]);

    // Take it away again, as if that had not happened.
    await backend.deleteVm({ name: vm, host: B.uri });
    expect(ownFiles(B.storageDir)).toEqual([]);

    // 2. The CLI with the real check: s2 is skipped before anything is written; s1 resumes.
    const r = await runCli(["recover", vm, "--hosts", `${A.uri},${B.uri}`, "--repository", lab.repository, "--pool", "pvlab", "--json"]);
    console.log(`protected-vm recover:\n${r.stderr}`);
    expect(r.code).toBe(0);
    expect(r.json.snapshotId).toBe(s1.id);
    expect(r.json.attempts.map((a: any) => [a.snapshotId, a.outcome])).toEqual([[s2.id, "unrestorable"], [s1.id, "recovered"]]);
    expect(r.json.attempts[0].detail).toMatch(/backing file .* is not in the snapshot/);

    // The guest continued from s1: not rebooted (a boot starts at 1), not from s2's later state.
    const consoleB = path.join(B.storageDir, `${vm}.console.log`);
    await waitForCounter(consoleB, 1, 60_000);
    const firstB = counters(consoleB)[0].n;
    expect(firstB).toBeGreaterThan(1);
    expect(firstB).toBeGreaterThanOrEqual(beforeS1);
    expect(firstB).toBeLessThanOrEqual(atS1 + 1);
    expect(firstB).toBeLessThan(beforeS2);
    await waitForCounter(consoleB, firstB + 2, 60_000);

    // B's pool: the VM's disk and console log only, owned by B's user, not world-writable.
    expect(ownFiles(B.storageDir)).toEqual([`${vm}.console.log`, `${vm}.qcow2`]);
    const disk = fs.statSync(path.join(B.storageDir, `${vm}.qcow2`));
    expect(disk.uid).toBe(B.uid);
    expect(disk.mode & 0o777).toBe(0o600);
    console.log(`counters: s1 taken between ${beforeS1} and ${atS1}, s2 after ${beforeS2}, first on B ${firstB}`);
  });
});
