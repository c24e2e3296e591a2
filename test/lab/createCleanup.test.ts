/**
 * Issue 14, points 6-7 on real libvirt daemons, through the Domain provider's create (what
 * `pulumi up` runs): a missing pool fails before anything is made; a failed image copy leaves no
 * disk in the pool; a leftover disk of the VM's name is never adopted; a good create then works
 * and destroy removes its disk. No guest is booted.
 */
import * as fs from "fs";
import * as path from "path";
import { create, remove } from "../../pulumi/providers/domainImpl";
import type { DomainInputs, DomainOutputs } from "../../pulumi/providers/domainImpl";
import { ExecVirsh } from "../../hypervisor/libvirt/virsh";
import { withPolicyDefaults } from "../../core/policy";
import { runId } from "../support/cli";
import { LabState, cleanupDomains, ensureLab, labAvailable, removeFiles } from "../../lab/lab";

const describeLab = labAvailable() ? describe : describe.skip;

describeLab("lab: create fails before or cleans up after itself", () => {
  const vm = `pvt-cc-${runId()}`;
  const virsh = new ExecVirsh();
  let lab: LabState;
  const poolFiles = () => fs.readdirSync(lab.hosts.a.storageDir).filter((f) => f.startsWith(vm)).sort();
  const domains = async () => (await virsh.run(lab.hosts.a.uri, ["list", "--all", "--name"])).stdout.split("\n").map((s) => s.trim()).filter((s) => s === vm);

  beforeAll(async () => {
    lab = await ensureLab();
  });
  afterAll(async () => {
    if (!lab) return;
    await cleanupDomains(lab.hosts.a.uri, vm, virsh);
    removeFiles(...poolFiles().map((f) => path.join(lab.hosts.a.storageDir, f)));
    await virsh.run(lab.hosts.a.uri, ["pool-refresh", "pvlab"]).catch(() => undefined);
  });

  function inputs(pool: string, image?: string): DomainInputs {
    const protection = { version: 1 as const, backend: "libvirt" as const, primaryHost: lab.hosts.a.uri, recoveryHosts: [lab.hosts.b.uri], pool, policy: withPolicyDefaults({ repository: lab.repository }) };
    return {
      connection: { kind: "libvirt", pool },
      spec: { name: vm, memoryMiB: 64, vcpus: 1, disk: { sizeMiB: 16, pool, ...(image ? { image } : {}) }, boot: { kernel: lab.guest.kernel, initrd: lab.guest.initrd, cmdline: "quiet" }, protection },
      host: lab.hosts.a.uri,
      recoveryHosts: [lab.hosts.b.uri],
      running: false,
    };
  }

  test("missing pool, failed image copy, leftover disk, then a good create and destroy", async () => {
    await expect(create(inputs("no-such-pool"))).rejects.toThrow(/disk\.pool: storage pool no-such-pool is not usable .*nothing was created/);
    expect(poolFiles()).toEqual([]);
    expect(await domains()).toEqual([]);

    // The image vanished between preview and up: the copy fails, and the disk it made is removed.
    await expect(create(inputs("pvlab", path.join(lab.repository, `${vm}-missing.qcow2`)))).rejects.toThrow();
    expect(poolFiles()).toEqual([]);
    expect(await domains()).toEqual([]);

    // A leftover disk of that name (someone else's, or from before this fix) is refused, untouched.
    await virsh.run(lab.hosts.a.uri, ["vol-create-as", "pvlab", `${vm}.qcow2`, "1M", "--format", "qcow2"]);
    await expect(create(inputs("pvlab"))).rejects.toThrow(/^disk: volume .* already exists in pool pvlab .*did not write it/);
    expect(poolFiles()).toEqual([`${vm}.qcow2`]);
    expect(await domains()).toEqual([]);
    await virsh.run(lab.hosts.a.uri, ["vol-delete", "--pool", "pvlab", `${vm}.qcow2`]);

    const made = await create(inputs("pvlab"));
    expect(await domains()).toEqual([vm]);
    expect(poolFiles()).toEqual([`${vm}.qcow2`]);
    await remove(made.id!, made.outs as DomainOutputs);
    expect(await domains()).toEqual([]);
    expect(poolFiles()).toEqual([]);
  });
});
