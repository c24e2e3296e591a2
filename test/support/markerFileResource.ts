/**
 * A trivial dynamic resource (a file with given content) used to prove the Pulumi toolchain:
 * up, preview, refresh and destroy through the real CLI and the dynamic-provider plugin.
 */
import * as pulumi from "@pulumi/pulumi";
import { runtimeModulePath } from "../../provider/dynamic/runtimeModule";

export interface MarkerFileArgs {
  path: pulumi.Input<string>;
  content: pulumi.Input<string>;
}

const impl = runtimeModulePath("test/support/markerFileImpl");

const markerFileProvider: pulumi.dynamic.ResourceProvider = {
  create: (inputs) => require(impl).create(inputs),
  read: (id, props) => require(impl).read(id, props),
  diff: (id, olds, news) => require(impl).diff(id, olds, news),
  update: (id, olds, news) => require(impl).update(id, olds, news),
  delete: (id, props) => require(impl).remove(id, props),
};

export class MarkerFile extends pulumi.dynamic.Resource {
  declare readonly path: pulumi.Output<string>;
  declare readonly content: pulumi.Output<string>;
  constructor(name: string, args: MarkerFileArgs, opts?: pulumi.CustomResourceOptions) {
    super(markerFileProvider, name, args, opts, "protected-vm", "MarkerFile");
  }
}
