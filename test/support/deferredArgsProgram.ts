/**
 * A ProtectedVM whose settings arrive as Outputs (as they do when computed from other
 * resources), so the component cannot judge them at construction: the Domain provider's
 * `check` must catch bad values at preview. Config: policy (JSON), primaryHost, recoveryHost (or recoveryHosts, JSON), vmName.
 */
import * as pulumi from "@pulumi/pulumi";
import { ProtectedVM } from "../../pulumi/protectedVm";

export async function program() {
  const cfg = new pulumi.Config();
  const later = <T>(v: T) => pulumi.output(new Promise<T>((r) => setTimeout(() => r(v), 10)));
  const vm = new ProtectedVM("deferred", {
    vmName: later(cfg.get("vmName") ?? "pv-deferred"),
    memoryMiB: 128,
    disk: { sizeMiB: 16 },
    primaryHost: later(cfg.require("primaryHost")),
    // `recoveryHosts` (a JSON list) overrides `recoveryHost`, e.g. to pass an empty list.
    recoveryHosts: later(cfg.get("recoveryHosts") !== undefined ? (JSON.parse(cfg.require("recoveryHosts")) as string[]) : [cfg.require("recoveryHost")]),
    snapshotPolicy: later(JSON.parse(cfg.require("policy"))),
  });
  return { vmName: vm.vmName };
}
