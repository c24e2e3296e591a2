/**
 * A trivial dynamic resource (a file with given content) used to prove the Pulumi toolchain:
 * up, preview, refresh and destroy through the real CLI and the dynamic-provider plugin.
 */
import * as path from "path";
import * as pulumi from "@pulumi/pulumi";
import { delegatingProvider } from "../../pulumi/providers/runtimeModule";

export interface MarkerFileArgs {
  path: pulumi.Input<string>;
  content: pulumi.Input<string>;
}

const markerFileProvider = delegatingProvider(path.join(__dirname, "markerFileImpl.js"), ["create", "read", "diff", "update", "delete"]);

export class MarkerFile extends pulumi.dynamic.Resource {
  declare readonly path: pulumi.Output<string>;
  declare readonly content: pulumi.Output<string>;
  constructor(name: string, args: MarkerFileArgs, opts?: pulumi.CustomResourceOptions) {
    super(markerFileProvider, name, args, opts, "protected-vm", "MarkerFile");
  }
}
