/**
 * One protected VM with a recovery host and a load-adaptive snapshot policy, on libvirt (the
 * local lab: `npm run demo`) or on CloudStack (`--config backend=cloudstack`). Run it as
 *   protected-vm stack up --program dist/examples/protected-vm/index.js --config primaryHost=... ...
 *
 * Config (strings): backend ("libvirt" | "cloudstack"), primaryHost, recoveryHost, repository,
 * vmName ("pv-demo"), memoryMiB (128), keepLast (3), minInterval (10), maxInterval (60), onDestroy.
 * libvirt: kernel, initrd, pool ("default"), guestLoadMiB (8: what the guest keeps rewriting),
 * schedulerLog (set it to start the scheduler for this VM with the stack, logging there).
 * CloudStack: endpoint, apiKey (secret), secretKey (secret), zoneId, serviceOfferingId, templateId.
 */
import * as pulumi from "@pulumi/pulumi";
import { ProtectedVM, ProtectedVMArgs } from "../../index";

export async function program() {
  const cfg = new pulumi.Config();
  const backend = (cfg.get("backend") ?? "libvirt") as "libvirt" | "cloudstack";
  const common: ProtectedVMArgs = {
    backend,
    vmName: cfg.get("vmName") ?? "pv-demo",
    memoryMiB: cfg.getNumber("memoryMiB") ?? 128,
    vcpus: 1,
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
  };
  const args: ProtectedVMArgs =
    backend === "cloudstack"
      ? {
          ...common,
          cloudstack: {
            connection: {
              endpoint: cfg.require("endpoint"),
              apiKey: cfg.requireSecret("apiKey"),
              secretKey: cfg.requireSecret("secretKey"),
              zone: cfg.require("zoneId"),
            },
            placement: { zoneId: cfg.require("zoneId"), serviceOfferingId: cfg.require("serviceOfferingId"), templateId: cfg.require("templateId") },
          },
        }
      : {
          ...common,
          disk: { sizeMiB: 32, pool: cfg.get("pool") ?? "default" },
          // Lab convenience: `--config schedulerLog=/path` starts the scheduler with the stack.
          scheduler: cfg.get("schedulerLog") ? { logFile: cfg.require("schedulerLog") } : undefined,
          boot: {
            kernel: cfg.require("kernel"),
            initrd: cfg.require("initrd"),
            cmdline: `quiet console=ttyS0 pv.mem=${cfg.getNumber("guestLoadMiB") ?? 8} pv.rate=1`,
          },
        };
  const vm = new ProtectedVM("demo", args);
  return {
    vmName: vm.vmName,
    currentHost: vm.currentHost,
    state: vm.state,
    newestSnapshotId: vm.newestSnapshotId,
    newestSnapshotTime: vm.newestSnapshotTime,
    repository: vm.policy.repository,
  };
}
