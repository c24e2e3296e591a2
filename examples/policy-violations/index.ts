/**
 * A stack that breaks the protected-vm policy pack: one VM per rule, each compliant with every
 * other rule, so each violation points at exactly one resource.
 *
 *   pv-unprotected   a Domain with no snapshot policy                     -> pv-vm-protected
 *   pv-slow-rpo      maxIntervalSeconds 3600 (RPO target 300 s)            -> pv-rpo-target
 *   pv-thin          keepLast 1 (at least 2)                               -> pv-retention
 *   pv-one-recovery  1 recovery host (policy-config: at least 2)           -> pv-recovery-hosts
 *   (no recovery host at all, or the primary under another spelling, is refused by the
 *    component itself at preview: core/policy validateProtection, before any policy runs)
 *   pv-local-repo    repository under /var/lib/libvirt (hypervisor disk)   -> pv-repository-off-host
 *                    (and a second repository in the stack)               -> pv-single-repository (stack)
 *   pv-cold-db       includeMemory false, listed in protected-vm:warmRecovery -> pv-warm-recovery
 *
 * Config: repository (required, an existing shared directory), primaryHost, recoveryHost,
 * recoveryHost2, localRepository (default /var/lib/libvirt/pv-snapshots; must exist). Stack config: protected-vm:warmRecovery='["pv-cold-db"]'.
 */
import * as pulumi from "@pulumi/pulumi";
import { ProtectedVM } from "../../index";
import { Domain } from "../../pulumi/providers/domain";

export async function program() {
  const cfg = new pulumi.Config();
  const primaryHost = cfg.get("primaryHost") ?? "qemu+ssh://hv1.example/system";
  const recoveryHost = cfg.get("recoveryHost") ?? "qemu+ssh://hv2.example/system";
  const recoveryHost2 = cfg.get("recoveryHost2") ?? "qemu+ssh://hv4.example/system";
  const repository = cfg.require("repository");
  const localRepository = cfg.get("localRepository") ?? "/var/lib/libvirt/pv-snapshots";
  const disk = { sizeMiB: 32, pool: "default" };
  const ok = { repository, minIntervalSeconds: 30, maxIntervalSeconds: 120, keepLast: 12, includeMemory: true };
  const base = { memoryMiB: 128, vcpus: 1, disk, primaryHost, recoveryHosts: [recoveryHost, recoveryHost2] };

  new Domain("pv-unprotected", {
    connection: { kind: "libvirt", pool: "default" },
    spec: { name: "pv-unprotected", memoryMiB: 128, vcpus: 1, disk },
    host: primaryHost,
    recoveryHosts: [],
  });
  new ProtectedVM("pv-slow-rpo", { ...base, snapshotPolicy: { ...ok, maxIntervalSeconds: 3600 } });
  new ProtectedVM("pv-thin", { ...base, snapshotPolicy: { ...ok, keepLast: 1 } });
  new ProtectedVM("pv-one-recovery", { ...base, recoveryHosts: [recoveryHost], snapshotPolicy: ok });
  new ProtectedVM("pv-local-repo", { ...base, snapshotPolicy: { ...ok, repository: localRepository } });
  new ProtectedVM("pv-cold-db", { ...base, snapshotPolicy: { ...ok, includeMemory: false } });
  return {};
}
