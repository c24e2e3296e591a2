/**
 * Snapshot and restore with files streamed through libvirt (vol-download / vol-upload), as the
 * backend does for remote hosts (qemu+ssh://...) whose pool directories the management host
 * cannot see: on the lab, forced with transfer "stream". The guest's counter must continue.
 */
import * as fs from "fs";
import * as path from "path";
import { ensureLab, LabState, removeLabVm, guestCmdline, waitForCounter, counters, waitForConsole } from "../../lab/lab";
import { runId } from "../support/cli";
import { LibvirtBackend } from "../../hypervisor/libvirt/backend";
import { withPolicyDefaults } from "../../core/policy";

describe("streamed snapshot transfer on the lab", () => {
  let lab: LabState;
  const vm = `pvstr-${runId()}`;

  beforeAll(async () => {
    lab = await ensureLab();
  });

  afterAll(async () => {
    await removeLabVm(lab, vm);
  });

  test("take on host a and restore on host b through the libvirt connection only", async () => {
    const A = lab.hosts.a, B = lab.hosts.b;
    const backend = new LibvirtBackend({ pool: A.pool, transfer: "stream" });
    const policy = withPolicyDefaults({ repository: lab.repository });
    await backend.defineVm(
      {
        name: vm, memoryMiB: 128, vcpus: 1, disk: { sizeMiB: 16, pool: A.pool },
        boot: { kernel: lab.guest.kernel, initrd: lab.guest.initrd, cmdline: guestCmdline({ mem: 8, rate: 1 }) },
        protection: { version: 1, backend: "libvirt", primaryHost: A.uri, recoveryHosts: [B.uri], policy, pool: A.pool },
      },
      A.uri,
    );
    await backend.startVm({ name: vm, host: A.uri });
    const consoleA = path.join(A.storageDir, `${vm}.console.log`);
    await waitForCounter(consoleA, 3, 120_000);

    let t = Date.now();
    const snap = await backend.takeSnapshot({ name: vm, host: A.uri }, { includeMemory: true, repository: lab.repository });
    console.log(`streamed take: ${Date.now() - t} ms, ${snap.bytes} bytes, guest paused ${snap.pauseMs} ms`);
    expect(snap.complete).toBe(true);
    // Nothing of the snapshot is left in host a's pool: only the disk and the console log.
    expect(fs.readdirSync(A.storageDir).filter((f) => f.startsWith(vm)).sort()).toEqual([`${vm}.console.log`, `${vm}.qcow2`]);

    const lastOnA = counters(consoleA).pop()!.n;
    await backend.stopVm({ name: vm, host: A.uri }, { force: true });

    t = Date.now();
    const info = await backend.restoreSnapshot(snap, B.uri, { repository: lab.repository });
    console.log(`streamed restore: ${Date.now() - t} ms`);
    expect(info).toMatchObject({ host: B.uri, state: "running" });
    const consoleB = path.join(B.storageDir, `${vm}.console.log`);
    const m = await waitForConsole(consoleB, /PVCOUNT (\d+) /, 60_000);
    expect(Number(m[1])).toBeGreaterThan(1);
    expect(Number(m[1])).toBeLessThanOrEqual(lastOnA + 1);
    // The restore staging went through vol-upload and is gone again.
    expect(fs.readdirSync(B.storageDir).filter((f) => f.startsWith(vm)).sort()).toEqual([`${vm}.console.log`, `${vm}.qcow2`]);
  });
});
