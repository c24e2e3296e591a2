/** `protected-vm:index:Retention` - a VM's snapshot retention, applied on up, reported on refresh. */
import * as pulumi from "@pulumi/pulumi";
import type { BackendConnection } from "../backends";
import { runtimeModulePath } from "./runtimeModule";

export interface RetentionArgs {
  connection: pulumi.Input<BackendConnection>;
  vmName: pulumi.Input<string>;
  repository: pulumi.Input<string>;
  keepLast: pulumi.Input<number>;
  maxAgeSeconds?: pulumi.Input<number>;
  onDestroy: pulumi.Input<"keep" | "delete">;
}

const impl = runtimeModulePath("provider/dynamic/retentionImpl");

const retentionProvider: pulumi.dynamic.ResourceProvider = {
  diff: (id, olds, news) => require(impl).diff(id, olds, news),
  create: (inputs) => require(impl).create(inputs),
  read: (id, props) => require(impl).read(id, props),
  update: (id, olds, news) => require(impl).update(id, olds, news),
  delete: (id, props) => require(impl).remove(id, props),
};

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
