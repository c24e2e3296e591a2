/**
 * The rules of the protected-vm policy pack, as pure functions over resource properties, so they
 * can be unit-tested without a Pulumi engine. pulumi/policy/pack/index.ts wires them into a PolicyPack.
 *
 * A "VM resource" is one of:
 *  - our Domain dynamic resource (type `pulumi-nodejs:protected-vm:Domain`; ProtectedVM creates
 *    one as its child). It is protected when its `spec.protection` record is set.
 *  - a VM from another provider (by default the libvirt and CloudStack Pulumi providers' VM
 *    types). Those carry no snapshot policy: they are reported as unprotected.
 *
 * Validation of the protection record itself is NOT re-implemented here: it is
 * core/policy.ts `validateProtection` / `validatePolicy`, the same code the component and
 * the Domain provider run. The rules here are the stricter, organisation-level ones a reviewer
 * configures (RPO target, retention depth, off-host repository, warm recovery).
 */
import * as path from "path";
import { ProtectionRecord, SnapshotPolicy, validateProtection, ValidationError, DEFAULT_POLICY } from "../../core/policy";
import type { VmSpec } from "../../core/model";

/**
 * Resource types of the Domain dynamic resource. The engine reports a dynamic resource
 * registered with module "protected-vm" and type "Domain" as `pulumi-nodejs:dynamic/protected-vm:Domain`
 * (seen in `pulumi preview` with Pulumi 3.274); the other spellings are accepted for safety.
 */
export const DOMAIN_TYPES = ["pulumi-nodejs:dynamic/protected-vm:Domain", "pulumi-nodejs:protected-vm:Domain", "protected-vm:index:Domain"];
export const PROTECTED_VM_TYPE = "protected-vm:index:ProtectedVM";
/** VM types of other providers that this pack treats as VMs (configurable). */
export const DEFAULT_FOREIGN_VM_TYPES = ["libvirt:index/domain:Domain", "cloudstack:index/instance:Instance"];

/** What the rules need to know about one VM resource. */
export interface VmFacts {
  urn: string;
  /** Pulumi resource name. */
  resourceName: string;
  type: string;
  /** VM (domain) name on the host, when known. */
  vmName?: string;
  backend?: "libvirt" | "cloudstack";
  primaryHost?: string;
  recoveryHosts?: string[];
  protection?: ProtectionRecord;
  memoryMiB?: number;
  diskMiB?: number;
}

/** Read the facts of a resource; undefined when it is not a VM this pack knows. */
export function vmFacts(type: string, props: Record<string, any>, urn: string, resourceName: string, foreignVmTypes = DEFAULT_FOREIGN_VM_TYPES): VmFacts | undefined {
  if (DOMAIN_TYPES.includes(type)) {
    const spec = (props?.spec ?? {}) as Partial<VmSpec>;
    const protection = spec.protection as ProtectionRecord | undefined;
    return {
      urn,
      resourceName,
      type,
      vmName: spec.name,
      backend: props?.connection?.kind ?? protection?.backend,
      primaryHost: props?.host ?? protection?.primaryHost,
      recoveryHosts: props?.recoveryHosts ?? protection?.recoveryHosts,
      protection: protection && typeof protection === "object" ? protection : undefined,
      memoryMiB: spec.memoryMiB,
      diskMiB: spec.disk ? (spec.disk.sizeMiB ?? 64) : undefined,
    };
  }
  if (foreignVmTypes.includes(type)) {
    return { urn, resourceName, type, vmName: props?.name, backend: type.startsWith("cloudstack:") ? "cloudstack" : "libvirt" };
  }
  return undefined;
}

/** The protection policy with defaults applied (a record written by ProtectedVM always has them). */
function policyOf(f: VmFacts): SnapshotPolicy | undefined {
  if (!f.protection?.policy) return undefined;
  return { ...DEFAULT_POLICY, ...f.protection.policy } as SnapshotPolicy;
}

const label = (f: VmFacts) => `VM ${f.vmName ?? f.resourceName} (${f.urn})`;

// ---------------------------------------------------------------- pv-vm-protected

export interface ProtectedConfig {
  /** VM resource names or VM names (globs with *) that may stay unprotected. */
  exempt?: string[];
}

export function checkProtected(f: VmFacts, cfg: ProtectedConfig = {}): string[] {
  if (f.protection) return [];
  if (matchesAny(cfg.exempt ?? [], f.vmName, f.resourceName)) return [];
  const how = DOMAIN_TYPES.includes(f.type)
    ? "it is a Domain with no snapshot policy (spec.protection is unset)"
    : `it is a ${f.type} VM, which has no snapshot policy`;
  return [`${label(f)} is not protected: ${how}. Wrap it in ProtectedVM (protected-vm:index:ProtectedVM) or give it a snapshot policy, or list it in this rule's "exempt".`];
}

// ---------------------------------------------------------------- pv-protection-valid

/** The component's own validation (validateProtection), reported through the pack. */
export function checkProtectionValid(f: VmFacts): string[] {
  if (!f.protection) return [];
  const errs = protectionErrors(f);
  return errs.map((e) => `${label(f)}: ${e.field}: ${e.message}`);
}

function protectionErrors(f: VmFacts): ValidationError[] {
  const p = f.protection!;
  return validateProtection({
    backend: f.backend ?? p.backend,
    name: f.vmName ?? "",
    primaryHost: f.primaryHost ?? p.primaryHost,
    recoveryHosts: f.recoveryHosts ?? p.recoveryHosts ?? [],
    policy: policyOf(f) ?? {},
  });
}

// ---------------------------------------------------------------- pv-rpo-target

export interface RpoConfig {
  /** Worst-case data loss the organisation accepts, seconds. The policy's maxIntervalSeconds must not exceed it. */
  rpoTargetSeconds?: number;
}

export function checkRpo(f: VmFacts, cfg: RpoConfig = {}): string[] {
  const p = policyOf(f);
  if (!p) return [];
  const target = cfg.rpoTargetSeconds ?? 300;
  if (typeof p.maxIntervalSeconds === "number" && p.maxIntervalSeconds > target) {
    return [`${label(f)}: snapshotPolicy.maxIntervalSeconds is ${p.maxIntervalSeconds} s, above the RPO target of ${target} s: when the VM is busy a failure could lose up to ${p.maxIntervalSeconds} s of state. Lower maxIntervalSeconds to <= ${target}.`];
  }
  return [];
}

// ---------------------------------------------------------------- pv-retention

export interface RetentionConfig {
  /** keepLast must be at least this. */
  minSnapshots?: number;
  /**
   * Retention must always hold one snapshot at least this old (seconds; 0 = off), so a problem
   * noticed late (corruption, a bad change) can still be rolled back past. Guaranteed when
   * (keepLast - 1) x minIntervalSeconds >= this (snapshots are never closer than
   * minIntervalSeconds) and maxAgeSeconds, if set, is >= this.
   */
  minOldestAgeSeconds?: number;
}

export function checkRetention(f: VmFacts, cfg: RetentionConfig = {}): string[] {
  const p = policyOf(f);
  if (!p) return [];
  const out: string[] = [];
  const minSnapshots = cfg.minSnapshots ?? 2;
  if (typeof p.keepLast === "number" && p.keepLast < minSnapshots) {
    out.push(`${label(f)}: snapshotPolicy.keepLast is ${p.keepLast}; retention must keep at least ${minSnapshots} snapshots.`);
  }
  const minAge = cfg.minOldestAgeSeconds ?? 0;
  if (minAge > 0) {
    if (typeof p.maxAgeSeconds === "number" && p.maxAgeSeconds < minAge) {
      out.push(`${label(f)}: snapshotPolicy.maxAgeSeconds is ${p.maxAgeSeconds} s: snapshots are deleted before they are ${minAge} s old, so none older than ${minAge} s is kept.`);
    }
    const guaranteed = (p.keepLast - 1) * p.minIntervalSeconds;
    if (guaranteed < minAge) {
      const need = Math.ceil(minAge / p.minIntervalSeconds) + 1;
      out.push(`${label(f)}: keepLast ${p.keepLast} x minIntervalSeconds ${p.minIntervalSeconds} only guarantees a snapshot ${guaranteed} s old; at least one older than ${minAge} s must be kept (keepLast >= ${need}, or a longer minIntervalSeconds).`);
    }
  }
  return out;
}

// ---------------------------------------------------------------- pv-recovery-hosts

export interface RecoveryHostsConfig {
  minRecoveryHosts?: number;
}

/**
 * Identity of the machine behind a host reference, to catch "recovery host = primary" spelled
 * differently (user@, port, transport, case). A libvirt URI with a hostname is that machine;
 * a local URI (qemu:///system) is the management host itself - unless it names a daemon socket
 * (`?socket=`), which the lab uses to run several independent "hosts" on one machine.
 * A CloudStack host id is itself.
 */
export function hostIdentity(h: string): string {
  const m = /^([a-z][a-z0-9+.-]*):\/\/(?:[^@/?]*@)?(\[[^\]]*\]|[^/:?]*)(?::\d+)?(\/[^?]*)?(?:\?(.*))?$/i.exec(h.trim());
  if (!m) return `id:${h.trim().toLowerCase()}`;
  const hostname = m[2].toLowerCase().replace(/\.$/, "").replace(/^\[|\]$/g, "");
  if (hostname && !["localhost", "127.0.0.1", "::1"].includes(hostname)) return `host:${hostname}`;
  const socket = new URLSearchParams(m[4] ?? "").get("socket");
  return socket ? `local-socket:${socket}` : "local";
}

export function checkRecoveryHosts(f: VmFacts, cfg: RecoveryHostsConfig = {}): string[] {
  if (!f.protection) return [];
  const out: string[] = [];
  const primary = f.primaryHost ?? f.protection.primaryHost;
  const hosts = f.recoveryHosts ?? f.protection.recoveryHosts ?? [];
  const min = cfg.minRecoveryHosts ?? 1;
  if (hosts.length < min) {
    out.push(`${label(f)} has ${hosts.length} recovery host(s); at least ${min} required, none of them the primary host ${primary}.`);
  }
  // Exact duplicates of the primary: reported by validateProtection (reused, not re-implemented).
  const exact = protectionErrors(f).filter((e) => e.field.startsWith("recoveryHosts[") && /primary host/.test(e.message));
  for (const e of exact) out.push(`${label(f)}: ${e.field}: ${e.message}`);
  const primaryId = primary ? hostIdentity(primary) : undefined;
  const seen = new Set<string>();
  hosts.forEach((h, i) => {
    const id = hostIdentity(h);
    if (h !== primary && id === primaryId) {
      out.push(`${label(f)}: recoveryHosts[${i}] ${h} is the primary host ${primary} under another spelling (same machine: ${id}); a recovery host must be another machine.`);
    } else if (seen.has(id) && h !== primary) {
      out.push(`${label(f)}: recoveryHosts[${i}] ${h} repeats another recovery host (${id}).`);
    }
    seen.add(id);
  });
  return out;
}

// ---------------------------------------------------------------- pv-repository-off-host

export interface RepositoryConfig {
  /**
   * Directories that are shared storage every host reaches (NFS, CephFS, ... mount points).
   * When set, a libvirt repository must be under one of them.
   */
  sharedMounts?: string[];
  /**
   * Directories on a hypervisor's own disks (storage pool directories, temp dirs). A libvirt
   * repository under one of them (and not under a shared mount) is on the primary's local disk.
   */
  localPaths?: string[];
  /** CloudStack: where snapshots must be kept. "secondary" (zone-wide, off the host's cluster) by default. */
  cloudstackStorage?: "secondary" | "primary";
}

export const DEFAULT_LOCAL_PATHS = ["/var/lib/libvirt", "/tmp", "/var/tmp", "/dev/shm", "/run"];

function under(p: string, dir: string): boolean {
  const rel = path.relative(path.resolve(dir), path.resolve(p));
  return rel === "" || (!rel.startsWith("..") && !path.isAbsolute(rel));
}

export function checkRepositoryOffHost(f: VmFacts, cfg: RepositoryConfig = {}): string[] {
  const p = policyOf(f);
  if (!p || typeof p.repository !== "string") return [];
  const repo = p.repository;
  const backend = f.backend ?? f.protection?.backend;
  if (backend === "cloudstack") {
    const want = cfg.cloudstackStorage ?? "secondary";
    return repo === want ? [] : [`${label(f)}: snapshots are kept on CloudStack "${repo}" storage; they must be on "${want}" storage (off the primary host's cluster).`];
  }
  if (!path.isAbsolute(repo)) return [`${label(f)}: repository ${JSON.stringify(repo)} is not an absolute path, so where it lives cannot be judged.`];
  const shared = cfg.sharedMounts ?? [];
  const local = cfg.localPaths ?? DEFAULT_LOCAL_PATHS;
  const onShared = shared.some((d) => under(repo, d));
  if (!onShared) {
    const hit = local.find((d) => under(repo, d));
    if (hit) return [`${label(f)}: repository ${repo} is under ${hit}, a directory on the hypervisor's own disk: the snapshots would die with the primary host ${f.primaryHost ?? ""}. Keep them on shared storage${shared.length ? ` (one of ${shared.join(", ")})` : ""}.`];
    if (shared.length) return [`${label(f)}: repository ${repo} is not under any configured shared mount (${shared.join(", ")}): it may be on the primary host's local disk.`];
  }
  return [];
}

// ---------------------------------------------------------------- pv-warm-recovery

export interface WarmRecoveryConfig {
  /** VM names or resource names (globs with *) that need warm recovery (memory captured). */
  vms?: string[];
}

/**
 * Parse the stack config value `protected-vm:warmRecovery`: a JSON list of VM names (globs
 * allowed), a comma-separated list, or "*"/"true" for every VM.
 */
export function parseWarmRecovery(value: string | undefined): string[] {
  if (value === undefined || value.trim() === "") return [];
  const v = value.trim();
  if (v === "true" || v === "*") return ["*"];
  if (v === "false") return [];
  try {
    const parsed = JSON.parse(v);
    if (Array.isArray(parsed)) return parsed.map(String);
    if (parsed === true) return ["*"];
    if (typeof parsed === "string") return [parsed];
  } catch {
    /* not JSON: a comma-separated list */
  }
  return v.split(",").map((s) => s.trim()).filter(Boolean);
}

export function checkWarmRecovery(f: VmFacts, warmVms: string[]): string[] {
  const p = policyOf(f);
  if (!p) return [];
  if (!matchesAny(warmVms, f.vmName, f.resourceName)) return [];
  if (p.includeMemory === false) {
    return [`${label(f)} needs warm recovery (listed in protected-vm:warmRecovery) but its snapshot policy has includeMemory: false: it would be recovered cold (rebooted). Set includeMemory: true.`];
  }
  return [];
}

// ---------------------------------------------------------------- stack level

/** pv-single-repository: every protected VM of the stack uses the same repository. */
export function checkSingleRepository(vms: VmFacts[]): Array<{ urn?: string; message: string }> {
  const byRepo = new Map<string, VmFacts[]>();
  for (const f of vms) {
    const p = policyOf(f);
    if (!p || typeof p.repository !== "string") continue;
    byRepo.set(p.repository, [...(byRepo.get(p.repository) ?? []), f]);
  }
  if (byRepo.size <= 1) return [];
  const list = [...byRepo.entries()].map(([r, fs]) => `${r}: ${fs.map((f) => f.vmName ?? f.resourceName).join(", ")}`).join("; ");
  return [{ message: `protected VMs of this stack use ${byRepo.size} different snapshot repositories (${list}); they must share one repository (one quota, one place to watch).` }];
}

export interface QuotaConfig {
  /** Quota of each repository, MiB (0 = off). */
  quotaMiB?: number;
  /** Per-repository quotas, MiB, overriding quotaMiB. */
  quotas?: Record<string, number>;
}

/**
 * Worst-case space a VM's retained snapshots need: keepLast x (memory if captured + disk), as
 * if nothing were shared between snapshots (the repository deduplicates, so real use is lower).
 */
export function worstCaseMiB(f: VmFacts): number {
  const p = policyOf(f);
  if (!p) return 0;
  const per = (p.includeMemory ? f.memoryMiB ?? 0 : 0) + (f.diskMiB ?? 0);
  return p.keepLast * per;
}

/** pv-repository-quota: the protected VMs sharing a repository fit its quota together. */
export function checkRepositoryQuota(vms: VmFacts[], cfg: QuotaConfig = {}): Array<{ urn?: string; message: string }> {
  const byRepo = new Map<string, VmFacts[]>();
  for (const f of vms) {
    const p = policyOf(f);
    if (!p || typeof p.repository !== "string") continue;
    byRepo.set(p.repository, [...(byRepo.get(p.repository) ?? []), f]);
  }
  const out: Array<{ urn?: string; message: string }> = [];
  for (const [repo, fs] of byRepo) {
    const quota = cfg.quotas?.[repo] ?? cfg.quotaMiB ?? 0;
    if (!(quota > 0)) continue;
    const total = fs.reduce((s, f) => s + worstCaseMiB(f), 0);
    if (total > quota) {
      const parts = fs.map((f) => `${f.vmName ?? f.resourceName} ${worstCaseMiB(f)} MiB`).join(", ");
      out.push({ message: `repository ${repo} is shared by ${fs.length} protected VM(s) whose retained snapshots need up to ${total} MiB (${parts}), over its quota of ${quota} MiB. Lower keepLast, or raise the quota.` });
    }
  }
  return out;
}

// ---------------------------------------------------------------- helpers

function globToRegExp(g: string): RegExp {
  return new RegExp("^" + g.split("*").map((s) => s.replace(/[.+?^${}()|[\]\\]/g, "\\$&")).join(".*") + "$");
}

export function matchesAny(patterns: string[], ...names: Array<string | undefined>): boolean {
  return patterns.some((p) => names.some((n) => n !== undefined && globToRegExp(p).test(n)));
}
