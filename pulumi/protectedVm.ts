/**
 * ProtectedVM: a libvirt or CloudStack VM declared together with its snapshot policy. The VM
 * carries its protection record (libvirt <metadata>, CloudStack tags), so the companion
 * scheduler finds it, snapshots it on its policy and ships the snapshots off-host; `recover`
 * resumes it elsewhere from the newest complete snapshot.
 */
import * as pulumi from "@pulumi/pulumi";
import type { CloudStackPlacement, DiskSpec, KernelBoot, VmSpec } from "../core/model";
import type { BackendConnection, CloudStackConnection } from "../hypervisor/createBackend";
import { Domain } from "./providers/domain";
import { Snapshot } from "./providers/snapshot";
import { Retention } from "./providers/retention";
import { SchedulerProcess } from "./providers/schedulerProcess";
import { PolicyValidationError, ProtectionRecord, SnapshotPolicy, SnapshotPolicyInput, validateProtection, withPolicyDefaults } from "../core/policy";

export type SnapshotPolicyArgs = { [K in keyof SnapshotPolicyInput]: pulumi.Input<SnapshotPolicyInput[K]> };

export interface CloudStackArgs {
  /** API endpoint and keys; pass the keys as secrets (`config.requireSecret`). */
  connection: pulumi.Input<Omit<CloudStackConnection, "kind">>;
  placement: pulumi.Input<CloudStackPlacement>;
}

export interface ProtectedVMArgs {
  /** "libvirt" (default) or "cloudstack". */
  backend?: "libvirt" | "cloudstack";
  /** VM (domain) name; default the resource name. */
  vmName?: pulumi.Input<string>;
  memoryMiB: pulumi.Input<number>;
  /** Default 1. */
  vcpus?: pulumi.Input<number>;
  /** libvirt disk: a new qcow2 of sizeMiB (default 64) or a copy of an image, in `pool`. */
  disk?: pulumi.Input<DiskSpec>;
  /** libvirt direct kernel boot. */
  boot?: pulumi.Input<KernelBoot>;
  /** libvirt network name (no NIC when unset). */
  network?: pulumi.Input<string>;
  /** Where the VM runs: a libvirt URI or a CloudStack host id. */
  primaryHost: pulumi.Input<string>;
  /** Where it may be recovered, in order of preference. */
  recoveryHosts: pulumi.Input<pulumi.Input<string>[]>;
  /** Interval bounds, load adaptation, retention, memory capture, repository. */
  snapshotPolicy: pulumi.Input<SnapshotPolicyArgs>;
  cloudstack?: CloudStackArgs;
  /** Take a snapshot right after the VM starts, so there is a restore point from minute one. Default true. */
  baselineSnapshot?: boolean;
  /**
   * Start the companion scheduler for this VM as a process on the machine running `pulumi up`
   * (for the lab and demos; production runs it as a service, see README). Default off.
   */
  scheduler?: { logFile: pulumi.Input<string>; statusFile?: pulumi.Input<string> };
}

function isPlain(v: unknown): boolean {
  if (pulumi.Output.isInstance(v) || v instanceof Promise) return false;
  if (Array.isArray(v)) return v.every(isPlain);
  if (v && typeof v === "object") return Object.values(v).every(isPlain);
  return true;
}

export class ProtectedVM extends pulumi.ComponentResource {
  /** The VM's name on its host. */
  readonly vmName: pulumi.Output<string>;
  /** Where the VM runs now (the primary host, or a recovery host after `recover` + `pulumi refresh`). */
  readonly currentHost: pulumi.Output<string>;
  readonly state: pulumi.Output<string>;
  /** The policy with defaults applied, as stored on the VM. */
  readonly policy: pulumi.Output<SnapshotPolicy>;
  readonly newestSnapshotId: pulumi.Output<string | null>;
  readonly newestSnapshotTime: pulumi.Output<string | null>;
  readonly domain: Domain;
  readonly retention: Retention;

  constructor(name: string, args: ProtectedVMArgs, opts?: pulumi.ComponentResourceOptions) {
    super("protected-vm:index:ProtectedVM", name, {}, opts);
    const backend = args.backend ?? "libvirt";
    const vmName = args.vmName ?? name;

    // Fail at construction (so at `pulumi preview`) when the settings are known and wrong.
    // Settings only known later are checked again by the Domain provider's `check`.
    if (isPlain([vmName, args.primaryHost, args.recoveryHosts, args.snapshotPolicy])) {
      const policy = withPolicyDefaults(args.snapshotPolicy as SnapshotPolicyInput);
      const errors = validateProtection({
        backend,
        name: vmName as string,
        primaryHost: args.primaryHost as string,
        recoveryHosts: args.recoveryHosts as string[],
        policy,
      });
      if (errors.length) throw new PolicyValidationError(errors, `ProtectedVM ${name}`);
    }

    const connection: pulumi.Input<BackendConnection> =
      backend === "cloudstack"
        ? pulumi.output(args.cloudstack?.connection ?? ({} as any)).apply((c) => ({ ...(c as object), kind: "cloudstack" }) as BackendConnection)
        : pulumi.output(args.disk).apply((d) => ({ kind: "libvirt", pool: d?.pool }) as BackendConnection);

    this.policy = pulumi.output(args.snapshotPolicy).apply((p) => withPolicyDefaults(p as SnapshotPolicyInput));
    const protection = pulumi
      .all([this.policy, args.primaryHost, args.recoveryHosts, args.disk])
      .apply(([policy, primaryHost, recoveryHosts, disk]): ProtectionRecord => ({
        version: 1,
        backend,
        primaryHost,
        recoveryHosts,
        policy,
        ...(backend === "libvirt" ? { pool: disk?.pool ?? "default" } : {}),
      }));
    const spec = pulumi
      .all([vmName, args.memoryMiB, args.vcpus, args.disk, args.boot, args.network, args.cloudstack?.placement, protection])
      .apply(([n, memoryMiB, vcpus, disk, boot, network, placement, prot]): VmSpec => {
        const s: VmSpec = { name: n, memoryMiB, vcpus: vcpus ?? 1, protection: prot };
        if (backend === "libvirt") s.disk = { sizeMiB: 64, ...(disk ?? {}) };
        if (boot) s.boot = boot;
        if (network) s.network = network;
        if (placement) s.cloudstack = placement;
        return s;
      });

    this.domain = new Domain(`${name}-vm`, { connection, spec, host: args.primaryHost, recoveryHosts: args.recoveryHosts }, { parent: this });

    // The name as the Domain reports it, so children depend on the VM existing.
    this.vmName = this.domain.spec.apply((s) => s.name);
    const hosts = pulumi.all([args.primaryHost, args.recoveryHosts]).apply(([p, r]) => [p, ...r]);
    const dependsOn: pulumi.Resource[] = [this.domain];
    if (args.baselineSnapshot !== false) {
      dependsOn.push(
        new Snapshot(
          `${name}-baseline`,
          {
            connection,
            vmName: this.vmName,
            hosts,
            repository: this.policy.repository,
            includeMemory: this.policy.includeMemory,
            keepOnDelete: this.policy.onDestroy.apply((d) => d === "keep"),
          },
          { parent: this, dependsOn: [this.domain] },
        ),
      );
    }

    this.retention = new Retention(
      `${name}-retention`,
      {
        connection,
        vmName: this.vmName,
        repository: this.policy.repository,
        keepLast: this.policy.keepLast,
        maxAgeSeconds: this.policy.maxAgeSeconds as pulumi.Output<number>,
        onDestroy: this.policy.onDestroy,
      },
      { parent: this, dependsOn },
    );

    if (args.scheduler && backend !== "libvirt") {
      throw new PolicyValidationError([{ field: "scheduler", message: "starting the scheduler from `pulumi up` is for libvirt labs; on CloudStack run `protected-vm scheduler --backend cloudstack` as a service" }], `ProtectedVM ${name}`);
    }
    if (args.scheduler) {
      new SchedulerProcess(
        `${name}-scheduler`,
        {
          vmName: this.vmName,
          hosts,
          pool: pulumi.output(args.disk).apply((d) => d?.pool ?? "default"),
          logFile: args.scheduler.logFile,
          statusFile: args.scheduler.statusFile,
        },
        { parent: this, dependsOn: [this.retention] },
      );
    }

    this.currentHost = this.domain.currentHost;
    this.state = this.domain.state;
    this.newestSnapshotId = this.retention.newestSnapshotId;
    this.newestSnapshotTime = this.retention.newestSnapshotTime;

    this.registerOutputs({
      vmName: this.vmName,
      currentHost: this.currentHost,
      state: this.state,
      policy: this.policy,
      newestSnapshotId: this.newestSnapshotId,
      newestSnapshotTime: this.newestSnapshotTime,
    });
  }
}
