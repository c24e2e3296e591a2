/**
 * A stack that passes the protected-vm policy pack (policy/pack) with the configuration in
 * policy-config.json: two ProtectedVMs on the same shared repository, RPO <= 120 s, retention
 * of at least 3 snapshots with one >= 5 min old, a recovery host on another machine, and memory
 * capture on the VM the stack marks as needing warm recovery.
 *
 *   npx tsc -p . && protected-vm stack preview --program dist/examples/policy-compliant/index.js \
 *     --policy-pack pulumi/policy/pack --config repository=/mnt/pv-repo --config protected-vm:warmRecovery='["pc-db"]'
 *
 * Config keys: repository (required; a shared directory), primaryHost (qemu+ssh://hv1.example/system),
 * recoveryHost (qemu+ssh://hv2.example/system), pool (default), kernel, initrd (boot files; not
 * needed for preview). Stack config `protected-vm:warmRecovery`: VMs that need warm recovery.
 */
import * as pulumi from "@pulumi/pulumi";
import { ProtectedVM } from "../../index";

export async function program() {
  const cfg = new pulumi.Config();
  const primaryHost = cfg.get("primaryHost") ?? "qemu+ssh://hv1.example/system";
  const recoveryHost = cfg.get("recoveryHost") ?? "qemu+ssh://hv2.example/system";
  const repository = cfg.require("repository");
  const pool = cfg.get("pool") ?? "default";
  const boot = cfg.get("kernel") ? { kernel: cfg.require("kernel"), initrd: cfg.get("initrd"), cmdline: "quiet console=ttyS0" } : undefined;

  const common = { vcpus: 1, disk: { sizeMiB: 32, pool }, boot, primaryHost, recoveryHosts: [recoveryHost] };
  const db = new ProtectedVM("pc-db", {
    ...common,
    memoryMiB: 256,
    snapshotPolicy: { repository, minIntervalSeconds: 30, maxIntervalSeconds: 120, keepLast: 12, includeMemory: true },
  });
  const web = new ProtectedVM("pc-web", {
    ...common,
    memoryMiB: 128,
    snapshotPolicy: { repository, minIntervalSeconds: 60, maxIntervalSeconds: 120, keepLast: 6, includeMemory: false },
  });
  return { db: db.vmName, web: web.vmName };
}
