/**
 * One protected VM on a libvirt host, with a recovery host and a load-adaptive snapshot policy.
 * Run it on the local lab with `npm run demo`, or as a program with
 *   protected-vm stack up --program dist/examples/libvirt-lab/index.js --config primaryHost=... ...
 * Config keys (all strings): primaryHost, recoveryHost, repository, kernel, initrd, pool,
 * vmName (default "pv-demo"), memoryMiB (128), keepLast (3), minInterval (10), maxInterval (60),
 * guestLoadMiB (8): what the guest's load program keeps rewriting.
 */
import * as pulumi from "@pulumi/pulumi";
import { ProtectedVM } from "../../components/protectedVm";

export async function program() {
  const cfg = new pulumi.Config();
  const loadMiB = cfg.getNumber("guestLoadMiB") ?? 8;
  const vm = new ProtectedVM("demo", {
    vmName: cfg.get("vmName") ?? "pv-demo",
    memoryMiB: cfg.getNumber("memoryMiB") ?? 128,
    vcpus: 1,
    disk: { sizeMiB: 32, pool: cfg.get("pool") ?? "default" },
    boot: {
      kernel: cfg.require("kernel"),
      initrd: cfg.require("initrd"),
      cmdline: `quiet console=ttyS0 pv.mem=${loadMiB} pv.rate=1`,
    },
    primaryHost: cfg.require("primaryHost"),
    recoveryHosts: [cfg.require("recoveryHost")],
    snapshotPolicy: {
      repository: cfg.require("repository"),
      minIntervalSeconds: cfg.getNumber("minInterval") ?? 10,
      maxIntervalSeconds: cfg.getNumber("maxInterval") ?? 60,
      loadAdaptive: true,
      keepLast: cfg.getNumber("keepLast") ?? 3,
      includeMemory: true,
      onDestroy: (cfg.get("onDestroy") as "keep" | "delete" | undefined) ?? "keep",
    },
  });
  return {
    vmName: vm.vmName,
    currentHost: vm.currentHost,
    state: vm.state,
    newestSnapshotId: vm.newestSnapshotId,
    newestSnapshotTime: vm.newestSnapshotTime,
    repository: vm.policy.repository,
  };
}
