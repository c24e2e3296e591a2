/**
 * Issue 14, point 5: two schedulers watching the same real VM. Before the per-VM writer lock,
 * 6 of 28 snapshots failed ("could not find base image in chain", ENOENT on the overlay,
 * "repository busy") and debris was left in the pool. Now: no failure, every reported snapshot
 * is complete and verifies, the guest keeps counting, and nothing is left behind.
 */
import * as fs from "fs";
import * as path from "path";
import { ExecVirsh } from "../../hypervisor/libvirt/virsh";
import { ensureLab, LabState, removeLabVm, guestCmdline, waitForCounter, counters } from "../../lab/lab";
import { runCli, runId } from "../support/cli";
import { LibvirtBackend } from "../../hypervisor/libvirt/backend";
import { SnapshotRepository } from "../../repository/repository";
import { withPolicyDefaults } from "../../core/policy";

describe("two schedulers on one VM", () => {
  let lab: LabState;
  const vm = `pv2w-${runId()}`;

  beforeAll(async () => {
    lab = await ensureLab();
  });

  afterAll(async () => {
    await removeLabVm(lab, vm);
  });

  test("produce no failed snapshot and no debris", async () => {
    const A = lab.hosts.a;
    const backend = new LibvirtBackend({ pool: A.pool });
    const policy = withPolicyDefaults({ repository: lab.repository, minIntervalSeconds: 1, maxIntervalSeconds: 2, keepLast: 10 });
    await backend.defineVm(
      {
        name: vm, memoryMiB: 128, vcpus: 1, disk: { sizeMiB: 16, pool: A.pool },
        boot: { kernel: lab.guest.kernel, initrd: lab.guest.initrd, cmdline: guestCmdline({ mem: 8, rate: 1 }) },
        protection: { version: 1, backend: "libvirt", primaryHost: A.uri, recoveryHosts: [lab.hosts.b.uri], policy, pool: A.pool },
      },
      A.uri,
    );
    await backend.startVm({ name: vm, host: A.uri });
    const consoleA = path.join(A.storageDir, `${vm}.console.log`);
    await waitForCounter(consoleA, 3, 120_000);
    const before = counters(consoleA).pop()!.n;

    const scheduler = () => runCli(["scheduler", "--hosts", A.uri, "--pool", A.pool, "--vm", vm, "--max-snapshots", "3", "--cpu-sample-ms", "200"], { timeoutMs: 480_000 });
    const [one, two] = await Promise.all([scheduler(), scheduler()]);
    const events = [one, two].flatMap((r) => r.stdout.trim().split("\n").filter(Boolean).map((l) => JSON.parse(l)));
    const taken = events.filter((e) => e.event === "snapshot");
    const skipped = events.filter((e) => e.event === "snapshot-skipped");
    console.log(`two schedulers: ${taken.length} snapshots, ${skipped.length} skipped (other writer), exit ${one.code}/${two.code}`);

    expect([one.code, two.code]).toEqual([0, 0]);
    expect(events.filter((e) => e.event === "snapshot-failed" || e.event === "prune-failed")).toEqual([]);
    expect(taken.length).toBe(6);
    for (const s of skipped) expect(s.reason).toMatch(/another snapshot writer holds VM .* pid \d+ on /);

    const repo = new SnapshotRepository(lab.repository);
    const list = await repo.list(vm);
    expect(list.every((r) => r.complete)).toBe(true); // no pending markers, no temp manifests
    for (const e of taken) {
      const rec = list.find((r) => r.id === e.id);
      expect(rec).toBeDefined();
      expect((await repo.verify(vm, e.id)).ok).toBe(true);
    }
    // In the pool: the disk, the console log and, with differential snapshots, the one overlay the
    // VM runs on (kept until the next snapshot) - no other overlay, no memory staging file.
    const { stdout: blk } = await new ExecVirsh().run(A.uri, ["domblklist", vm]);
    const active = blk.split("\n").map((l) => l.trim().split(/\s+/)).find((cols) => cols[0] === "vda")?.[1];
    const expected = [`${vm}.console.log`, `${vm}.qcow2`, ...(active && path.basename(active) !== `${vm}.qcow2` ? [path.basename(active)] : [])];
    expect(fs.readdirSync(A.storageDir).filter((f) => f.startsWith(vm)).sort()).toEqual(expected.sort());
    expect(fs.readdirSync(path.join(lab.repository, "locks")).filter((f) => f.includes(vm))).toEqual([]);
    // The guest ran on throughout.
    expect((await backend.findVm(vm, [A.uri]))?.state).toBe("running");
    expect(await waitForCounter(consoleA, before + 3, 60_000)).toBeGreaterThan(before);
  });
});
