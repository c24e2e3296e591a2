/**
 * `protected-vm:index:HaProcess` - an HA agent or manager as a local process started by
 * `pulumi up` and stopped by `pulumi destroy` (lab use; real hosts: systemd units).
 */
import * as pulumi from "@pulumi/pulumi";
import { delegatingProvider } from "./runtimeModule";

export interface HaProcessArgs {
  role: pulumi.Input<"agent" | "manager">;
  /** CLI flags after the role, e.g. ["--host", uri, "--etcd", url, "--metrics-port", "9464"]. */
  args: pulumi.Input<pulumi.Input<string>[]>;
  logFile: pulumi.Input<string>;
}

export const haProcessProvider = delegatingProvider("pulumi/providers/haProcessImpl", ["check", "diff", "create", "read", "delete"]);

export class HaProcess extends pulumi.dynamic.Resource {
  declare readonly pid: pulumi.Output<number>;
  constructor(name: string, args: HaProcessArgs, opts?: pulumi.CustomResourceOptions) {
    super(haProcessProvider, name, { pid: undefined, ...args }, opts, "protected-vm", "HaProcess");
  }
}
