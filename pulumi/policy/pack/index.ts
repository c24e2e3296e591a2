/**
 * The protected-vm policy pack: `pulumi preview --policy-pack pulumi/policy/pack`. Each policy has a
 * default enforcement level and parameters a reviewer overrides with --policy-pack-config, e.g.
 *   { "pv-rpo-target": { "enforcementLevel": "mandatory", "rpoTargetSeconds": 120 },
 *     "pv-retention": { "minSnapshots": 3, "minOldestAgeSeconds": 600 },
 *     "pv-repository-off-host": { "sharedMounts": ["/mnt/pv-repo"] } }
 * The rules themselves are in ../rules.ts. The VMs that need warm recovery come from the stack
 * config key `protected-vm:warmRecovery` (and/or the "vms" parameter of pv-warm-recovery).
 */
import { PolicyPack, ReportViolation, ResourceValidationArgs, StackValidationArgs, EnforcementLevel } from "@pulumi/policy";
import {
  DEFAULT_FOREIGN_VM_TYPES,
  DEFAULT_LOCAL_PATHS,
  VmFacts,
  checkProtected,
  checkProtectionValid,
  checkRecoveryHosts,
  checkRepositoryOffHost,
  checkRepositoryQuota,
  checkRetention,
  checkRpo,
  checkSingleRepository,
  checkWarmRecovery,
  parseWarmRecovery,
  vmFacts,
} from "../rules";

const level = (l: string | undefined, d: EnforcementLevel): EnforcementLevel => (l as EnforcementLevel) ?? d;

/** The pack's own level: PROTECTED_VM_POLICY_LEVEL=advisory turns every default to advisory (dry runs). */
const DEFAULT_LEVEL = level(process.env.PROTECTED_VM_POLICY_LEVEL, "mandatory");

/**
 * The stack's config. The engine sends it to every analyzer in the ConfigureStack RPC (and, when
 * it starts the pack through the language host, also as PULUMI_CONFIG); @pulumi/policy 1.21
 * keeps only the stack tags from that RPC, so we wrap its handler to keep the config too.
 */
const capturedConfig: Record<string, string> = {};

function captureStackConfig(): void {
  try {
    const grpc = require(require.resolve("@grpc/grpc-js", { paths: [require.resolve("@pulumi/policy")] }));
    const addService = grpc.Server.prototype.addService;
    grpc.Server.prototype.addService = function (service: unknown, impl: Record<string, any>) {
      const inner = impl?.configureStack;
      if (typeof inner === "function") {
        impl = {
          ...impl,
          configureStack: (call: any, callback: any) => {
            try {
              call.request.getConfigMap().forEach((v: string, k: string) => (capturedConfig[k] = v));
            } catch {
              /* an older engine: no config in the request */
            }
            return inner(call, callback);
          },
        };
      }
      return addService.call(this, service, impl);
    };
  } catch {
    /* @grpc/grpc-js not where expected: fall back to PULUMI_CONFIG */
  }
}
captureStackConfig();

/** A stack config value, e.g. "protected-vm:warmRecovery". */
export function stackConfig(key: string): string | undefined {
  if (capturedConfig[key] !== undefined) return capturedConfig[key];
  try {
    const cfg = JSON.parse(process.env.PULUMI_CONFIG ?? "{}") as Record<string, string>;
    return cfg[key] ?? cfg[key.replace(":", ":config:")];
  } catch {
    return undefined;
  }
}

/** Facts of the resource, or undefined when it is not a VM or its properties are not known yet (preview). */
function facts(args: { type: string; props: Record<string, any>; urn: string; name: string }, foreign: string[]): VmFacts | undefined {
  try {
    const f = vmFacts(args.type, args.props, args.urn, args.name, foreign);
    // Touch the values: unknown ones (computed during preview) throw here, not halfway through a rule.
    return f ? (JSON.parse(JSON.stringify(f)) as VmFacts) : undefined;
  } catch {
    return undefined;
  }
}

type Cfg = Record<string, any>;

function perVm(check: (f: VmFacts, cfg: Cfg) => string[]) {
  return (args: ResourceValidationArgs, report: ReportViolation) => {
    const cfg = args.getConfig<Cfg>();
    const f = facts(args, cfg.vmTypes ?? DEFAULT_FOREIGN_VM_TYPES);
    if (!f) return;
    for (const m of check(f, cfg)) report(m);
  };
}

function stackVms(args: StackValidationArgs): VmFacts[] {
  const out: VmFacts[] = [];
  for (const r of args.resources) {
    const f = facts(r, DEFAULT_FOREIGN_VM_TYPES);
    if (f) out.push(f);
  }
  return out;
}

const stringList = { type: "array", items: { type: "string" } } as const;

new PolicyPack("protected-vm", {
  enforcementLevel: DEFAULT_LEVEL,
  description: "Every VM is protected by repeated memory+disk snapshots kept off-host, within the organisation's RPO, retention and recovery-host rules.",
  policies: [
    {
      name: "pv-vm-protected",
      description: "Every libvirt or CloudStack VM in the stack is protected (wrapped by ProtectedVM or otherwise has a snapshot policy).",
      enforcementLevel: DEFAULT_LEVEL,
      configSchema: {
        properties: {
          vmTypes: { ...stringList, default: DEFAULT_FOREIGN_VM_TYPES, description: "Other providers' VM resource types, reported as unprotected." },
          exempt: { ...stringList, default: [], description: "VM or resource names (globs) allowed to stay unprotected." },
        },
      },
      validateResource: perVm((f, cfg) => checkProtected(f, cfg)),
    },
    {
      name: "pv-protection-valid",
      description: "The protection settings pass the component's own validation (validateProtection).",
      enforcementLevel: DEFAULT_LEVEL,
      validateResource: perVm((f) => checkProtectionValid(f)),
    },
    {
      name: "pv-rpo-target",
      description: "The snapshot policy's maximum interval does not exceed the RPO target.",
      enforcementLevel: DEFAULT_LEVEL,
      configSchema: { properties: { rpoTargetSeconds: { type: "number", default: 300, description: "RPO target, seconds." } } },
      validateResource: perVm((f, cfg) => checkRpo(f, cfg)),
    },
    {
      name: "pv-retention",
      description: "Retention keeps at least N snapshots and at least one older than a configured age.",
      enforcementLevel: DEFAULT_LEVEL,
      configSchema: {
        properties: {
          minSnapshots: { type: "integer", default: 2, description: "Minimum keepLast." },
          minOldestAgeSeconds: { type: "number", default: 0, description: "A snapshot at least this old must always be kept (0 = off)." },
        },
      },
      validateResource: perVm((f, cfg) => checkRetention(f, cfg)),
    },
    {
      name: "pv-recovery-hosts",
      description: "At least one recovery host, and none of them the primary host (also under another spelling of its URI).",
      enforcementLevel: DEFAULT_LEVEL,
      configSchema: { properties: { minRecoveryHosts: { type: "integer", default: 1 } } },
      validateResource: perVm((f, cfg) => checkRecoveryHosts(f, cfg)),
    },
    {
      name: "pv-repository-off-host",
      description: "Snapshots are kept off the primary host: libvirt repository on shared storage, not on a hypervisor's local disk; CloudStack on secondary storage.",
      enforcementLevel: DEFAULT_LEVEL,
      configSchema: {
        properties: {
          sharedMounts: { ...stringList, default: [], description: "Shared-storage directories; when set, the repository must be under one." },
          localPaths: { ...stringList, default: DEFAULT_LOCAL_PATHS, description: "Directories on a hypervisor's own disk (pool dirs, tmp)." },
          cloudstackStorage: { type: "string", enum: ["secondary", "primary"], default: "secondary" },
        },
      },
      validateResource: perVm((f, cfg) => checkRepositoryOffHost(f, cfg)),
    },
    {
      name: "pv-warm-recovery",
      description: "Memory capture is on for VMs the stack says need warm recovery (stack config protected-vm:warmRecovery).",
      enforcementLevel: DEFAULT_LEVEL,
      configSchema: { properties: { vms: { ...stringList, default: [], description: "More VM names (globs) that need warm recovery." } } },
      validateResource: perVm((f, cfg) => checkWarmRecovery(f, [...parseWarmRecovery(stackConfig("protected-vm:warmRecovery")), ...(cfg.vms ?? [])])),
    },
    {
      name: "pv-single-repository",
      description: "All protected VMs of the stack share one snapshot repository (one quota, one place to watch).",
      enforcementLevel: "advisory",
      validateStack: (args, report) => {
        for (const v of checkSingleRepository(stackVms(args))) report(v.message, v.urn);
      },
    },
    {
      name: "pv-repository-quota",
      description: "The protected VMs sharing a repository fit its quota with their retention (worst case, no deduplication).",
      enforcementLevel: DEFAULT_LEVEL,
      configSchema: {
        properties: {
          quotaMiB: { type: "number", default: 0, description: "Quota of every repository, MiB (0 = off)." },
          quotas: { type: "object", default: {}, description: "Per-repository quotas, MiB: { \"/mnt/pv-repo\": 20480 }." },
        },
      },
      validateStack: (args, report) => {
        for (const v of checkRepositoryQuota(stackVms(args), args.getConfig<Cfg>())) report(v.message, v.urn);
      },
    },
  ],
});
