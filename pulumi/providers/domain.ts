/** `protected-vm:index:Domain` - a VM on a libvirt or CloudStack host, as a Pulumi dynamic resource. */
import * as pulumi from "@pulumi/pulumi";
import type { VmSpec } from "../../core/model";
import type { BackendConnection } from "../../hypervisor/createBackend";
import { delegatingProvider } from "./runtimeModule";

export interface DomainArgs {
  connection: pulumi.Input<BackendConnection>;
  spec: pulumi.Input<VmSpec>;
  host: pulumi.Input<string>;
  recoveryHosts: pulumi.Input<pulumi.Input<string>[]>;
  running?: pulumi.Input<boolean>;
}

export const domainProvider = delegatingProvider("pulumi/providers/domainImpl", ["check", "diff", "create", "read", "update", "delete"]);

export class Domain extends pulumi.dynamic.Resource {
  declare readonly vmId: pulumi.Output<string>;
  declare readonly currentHost: pulumi.Output<string>;
  declare readonly state: pulumi.Output<string>;
  declare readonly spec: pulumi.Output<VmSpec>;

  constructor(name: string, args: DomainArgs, opts?: pulumi.CustomResourceOptions) {
    super(
      domainProvider,
      name,
      { vmId: undefined, currentHost: undefined, state: undefined, ...args, running: args.running ?? true },
      { ...opts, additionalSecretOutputs: ["connection"] },
      "protected-vm",
      "Domain",
    );
  }
}
