/** `protected-vm:index:SchedulerProcess` - the companion scheduler for one VM, started by `pulumi up` (lab use). */
import * as pulumi from "@pulumi/pulumi";
import { delegatingProvider } from "./runtimeModule";

export interface SchedulerProcessArgs {
  vmName: pulumi.Input<string>;
  hosts: pulumi.Input<pulumi.Input<string>[]>;
  pool?: pulumi.Input<string>;
  logFile: pulumi.Input<string>;
  statusFile?: pulumi.Input<string>;
}

export const schedulerProcessProvider = delegatingProvider("pulumi/providers/schedulerProcessImpl", ["diff", "create", "read", "delete"]);

export class SchedulerProcess extends pulumi.dynamic.Resource {
  declare readonly pid: pulumi.Output<number>;
  constructor(name: string, args: SchedulerProcessArgs, opts?: pulumi.CustomResourceOptions) {
    super(schedulerProcessProvider, name, { pid: undefined, ...args }, opts, "protected-vm", "SchedulerProcess");
  }
}
