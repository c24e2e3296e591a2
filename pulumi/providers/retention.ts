/** `protected-vm:index:Retention` - a VM's snapshot retention, applied on up, reported on refresh. */
import * as pulumi from "@pulumi/pulumi";
import type { BackendConnection } from "../../hypervisor/createBackend";
import { delegatingProvider } from "./runtimeModule";

export interface RetentionArgs {
  connection: pulumi.Input<BackendConnection>;
  vmName: pulumi.Input<string>;
  repository: pulumi.Input<string>;
  keepLast: pulumi.Input<number>;
  maxAgeSeconds?: pulumi.Input<number>;
  onDestroy: pulumi.Input<"keep" | "delete">;
}

export const retentionProvider = delegatingProvider("pulumi/providers/retentionImpl", ["diff", "create", "read", "update", "delete"]);

export class Retention extends pulumi.dynamic.Resource {
  declare readonly snapshotCount: pulumi.Output<number>;
  declare readonly newestSnapshotId: pulumi.Output<string | null>;
  declare readonly newestSnapshotTime: pulumi.Output<string | null>;
  declare readonly deletedSnapshotIds: pulumi.Output<string[]>;

  constructor(name: string, args: RetentionArgs, opts?: pulumi.CustomResourceOptions) {
    super(
      retentionProvider,
      name,
      { snapshotCount: undefined, newestSnapshotId: undefined, newestSnapshotTime: undefined, deletedSnapshotIds: undefined, ...args },
      { ...opts, additionalSecretOutputs: ["connection"] },
      "protected-vm",
      "Retention",
    );
  }
}
