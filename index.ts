/**
 * The public API of protected-vm: `import { ProtectedVM, recover } from "protected-vm"`.
 *
 * Layers, from the bottom: core/ (model, policy, validation, retention, interval - pure),
 * hypervisor/ (the Backend interface and its libvirt, CloudStack and simulated
 * implementations), repository/ (the snapshot store), ops/ (scheduler, recovery, drills),
 * pulumi/ (the component, dynamic providers, policy pack, automation), cli/.
 */
import * as path from "path";
import { PACKAGE_ROOT } from "./lib/packageRoot";

// Declaring protected VMs
export { ProtectedVM } from "./pulumi/protectedVm";
export type { ProtectedVMArgs, SnapshotPolicyArgs, CloudStackArgs } from "./pulumi/protectedVm";
export { Domain } from "./pulumi/providers/domain";
export type { DomainArgs } from "./pulumi/providers/domain";
export { Snapshot } from "./pulumi/providers/snapshot";
export type { SnapshotArgs } from "./pulumi/providers/snapshot";
export { Retention } from "./pulumi/providers/retention";
export type { RetentionArgs } from "./pulumi/providers/retention";

// The model and the policy
export type * from "./core/model";
export {
  DEFAULT_POLICY, DOMAIN_NAME_PATTERN, PolicyValidationError, isLibvirtUri, validatePolicy, validateProtection, withPolicyDefaults,
} from "./core/policy";
export type { ProtectionInput, ProtectionRecord, SnapshotPolicy, SnapshotPolicyInput, ValidationError } from "./core/policy";
export { nextIntervalSeconds } from "./core/interval";
export { snapshotsToDelete } from "./core/retention";
// Refusals (exit code 3) look the same on every backend.
export { EXIT, RefusedError, exitCodeOf } from "./core/errors";
export type { ExitCode } from "./core/errors";

// Hypervisors
export type { Backend } from "./hypervisor/backend";
export { createBackend } from "./hypervisor/createBackend";
export type { BackendConnection, CloudStackConnection, LibvirtConnection } from "./hypervisor/createBackend";
export { LibvirtBackend } from "./hypervisor/libvirt/backend";

// Operations
export { recover, selectSnapshot, RecoveryRefused } from "./ops/recover";
export type { RecoverOptions, RecoveryEvent, RecoveryReport, RecoveryStep } from "./ops/recover";
export { runDrill, cleanupDrills, formatDrillReport, DrillRefused } from "./ops/drill";
export type { DrillOptions, DrillReport, DrillCheck, GuestProbe, CleanupOptions, CleanupReport } from "./ops/drill";
export { Scheduler } from "./ops/scheduler";
export type { SchedulerOptions, SchedulerEvent, SchedulerEventSink, VmStatus } from "./ops/scheduler";
export { pruneSnapshots } from "./ops/prune";

/**
 * The CrossGuard policy pack, as a path to pass to `pulumi preview --policy-pack`: the executable
 * launcher, which works without `pulumi-language-nodejs` (the directory works where it exists).
 */
export const policyPackPath: string = path.join(PACKAGE_ROOT, "pulumi", "policy", "pack", "protected-vm-policy");
/** The policy pack as a directory (PulumiPolicy.yaml), for toolchains with the Node.js language host. */
export const policyPackDir: string = path.join(PACKAGE_ROOT, "pulumi", "policy", "pack");
