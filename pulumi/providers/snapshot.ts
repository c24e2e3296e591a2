/** `protected-vm:index:Snapshot` - one snapshot declared in code, e.g. the baseline after first boot. */
import * as pulumi from "@pulumi/pulumi";
import type { SnapshotRecord } from "../../core/model";
import type { BackendConnection } from "../../hypervisor/createBackend";
import { delegatingProvider } from "./runtimeModule";

export interface SnapshotArgs {
  connection: pulumi.Input<BackendConnection>;
  vmName: pulumi.Input<string>;
  hosts: pulumi.Input<pulumi.Input<string>[]>;
  repository: pulumi.Input<string>;
  includeMemory?: pulumi.Input<boolean>;
  /** Keep the snapshot when this resource is deleted. Default true: snapshots outlive deployments. */
  keepOnDelete?: pulumi.Input<boolean>;
  /** Change to take a new snapshot. */
  trigger?: pulumi.Input<string>;
}

export const snapshotProvider = delegatingProvider("pulumi/providers/snapshotImpl", ["diff", "create", "read", "update", "delete"]);

export class Snapshot extends pulumi.dynamic.Resource {
  declare readonly snapshot: pulumi.Output<SnapshotRecord>;

  constructor(name: string, args: SnapshotArgs, opts?: pulumi.CustomResourceOptions) {
    super(
      snapshotProvider,
      name,
      { snapshot: undefined, ...args, includeMemory: args.includeMemory ?? true, keepOnDelete: args.keepOnDelete ?? true },
      { ...opts, additionalSecretOutputs: ["connection"] },
      "protected-vm",
      "Snapshot",
    );
  }
}
