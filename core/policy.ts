/**
 * The protection policy: its defaults and its validation (its types are in core/model.ts). One validation function
 * serves the component (at construction), the dynamic providers (`check`, so errors show at
 * `pulumi preview`), the CLI and the policy pack.
 */
import type { BackendKind, SnapshotPolicy, SnapshotPolicyInput } from "./model";

export type { ProtectionRecord, SnapshotPolicy, SnapshotPolicyInput } from "./model";

export const DEFAULT_POLICY: Omit<SnapshotPolicy, "repository"> = {
  minIntervalSeconds: 30,
  maxIntervalSeconds: 300,
  loadAdaptive: true,
  cpuIdlePercent: 20,
  cpuBusyPercent: 70,
  keepLast: 3,
  includeMemory: true,
  onDestroy: "keep",
  liveSnapshot: "auto",
};

export function withPolicyDefaults(input: SnapshotPolicyInput): SnapshotPolicy {
  const out: SnapshotPolicy = { ...DEFAULT_POLICY, ...stripUndefined(input) } as SnapshotPolicy;
  return out;
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

export interface ValidationError {
  /** The input field at fault, e.g. "snapshotPolicy.minIntervalSeconds". */
  field: string;
  message: string;
}

/** libvirt domain names: what virsh accepts and what is safe as a file name. */
export const DOMAIN_NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/;

const LIBVIRT_URI_PATTERN = /^(qemu|test)(\+(ssh|tcp|tls|unix|libssh|libssh2))?:\/\/[^\s/]*\/(system|session|default)(\?\S*)?$/;

export function isLibvirtUri(uri: string): boolean {
  return LIBVIRT_URI_PATTERN.test(uri);
}

/**
 * The machine behind a host reference, so one host spelled two ways is recognised: user@, port,
 * transport (qemu+ssh / qemu+tls / qemu+unix / qemu), host-name case and a trailing dot do not
 * change the machine. A libvirt URI without a host (or localhost) is the management host itself,
 * unless it names a daemon socket (`?socket=`, normalised: `/a/./b` = `/a/b`), which the lab uses
 * to run independent "hosts" on one machine. A CloudStack host id is itself.
 */
export function hostIdentity(h: string): string {
  const m = /^([a-z][a-z0-9+.-]*):\/\/(?:[^@/?]*@)?(\[[^\]]*\]|[^/:?]*)(?::\d+)?(\/[^?]*)?(?:\?(.*))?$/i.exec(h.trim());
  if (!m) return `id:${h.trim()}`;
  const hostname = m[2].toLowerCase().replace(/\.$/, "").replace(/^\[|\]$/g, "");
  if (hostname && !["localhost", "127.0.0.1", "::1"].includes(hostname)) return `host:${hostname}`;
  const socket = new URLSearchParams(m[4] ?? "").get("socket");
  return socket ? `local-socket:${posixNormalize(socket)}` : "local";
}

/** path.posix.normalize without importing node's path (core/ does no I/O and stays portable). */
function posixNormalize(p: string): string {
  const out: string[] = [];
  for (const part of p.split("/")) {
    if (part === "" || part === ".") continue;
    if (part === "..") out.pop();
    else out.push(part);
  }
  return (p.startsWith("/") ? "/" : "") + out.join("/");
}

/** A value as a message shows it: JSON, except numbers JSON cannot spell (Infinity, NaN). */
export function show(v: unknown): string {
  return typeof v === "number" && !Number.isFinite(v) ? String(v) : JSON.stringify(v);
}

/**
 * Largest guest memory accepted, MiB (1 TiB): QEMU's default guest physical address width for
 * x86 (phys-bits 40) addresses 1 TiB, and every snapshot writes all of the guest's memory, so a
 * larger value is a typo (1e8 MiB = 95 TiB), not a plan.
 */
export const MAX_MEMORY_MIB = 1024 * 1024;

function isPositiveNumber(v: unknown): v is number {
  return typeof v === "number" && Number.isFinite(v) && v > 0;
}

/** Check a policy; every error names the field it is about. Pure: touches no disk or network. */
export function validatePolicy(p: Partial<SnapshotPolicy>, prefix = "snapshotPolicy"): ValidationError[] {
  const errs: ValidationError[] = [];
  const f = (name: string) => `${prefix}.${name}`;
  if (!isPositiveNumber(p.minIntervalSeconds)) {
    errs.push({ field: f("minIntervalSeconds"), message: `must be a number of seconds > 0, got ${show(p.minIntervalSeconds)}` });
  }
  if (!isPositiveNumber(p.maxIntervalSeconds)) {
    errs.push({ field: f("maxIntervalSeconds"), message: `must be a number of seconds > 0, got ${show(p.maxIntervalSeconds)}` });
  }
  if (isPositiveNumber(p.minIntervalSeconds) && isPositiveNumber(p.maxIntervalSeconds) && p.minIntervalSeconds > p.maxIntervalSeconds) {
    errs.push({ field: f("minIntervalSeconds"), message: `(${p.minIntervalSeconds}) must not exceed maxIntervalSeconds (${p.maxIntervalSeconds})` });
  }
  for (const k of ["cpuIdlePercent", "cpuBusyPercent"] as const) {
    const v = p[k];
    if (typeof v !== "number" || !(v >= 0 && v <= 100)) errs.push({ field: f(k), message: `must be a percentage 0..100, got ${show(v)}` });
  }
  if (typeof p.cpuIdlePercent === "number" && typeof p.cpuBusyPercent === "number" && p.cpuIdlePercent >= p.cpuBusyPercent) {
    errs.push({ field: f("cpuIdlePercent"), message: `(${p.cpuIdlePercent}) must be below cpuBusyPercent (${p.cpuBusyPercent})` });
  }
  if (typeof p.keepLast !== "number" || !Number.isInteger(p.keepLast) || p.keepLast < 1) {
    errs.push({ field: f("keepLast"), message: `retention must keep at least 1 snapshot, got ${show(p.keepLast)}` });
  }
  if (p.maxAgeSeconds !== undefined && !isPositiveNumber(p.maxAgeSeconds)) {
    errs.push({ field: f("maxAgeSeconds"), message: `must be a number of seconds > 0, got ${show(p.maxAgeSeconds)}` });
  }
  if (isPositiveNumber(p.maxAgeSeconds) && isPositiveNumber(p.maxIntervalSeconds) && p.maxAgeSeconds < p.maxIntervalSeconds) {
    errs.push({ field: f("maxAgeSeconds"), message: `(${p.maxAgeSeconds}) is shorter than maxIntervalSeconds (${p.maxIntervalSeconds}): every snapshot would expire before the next one` });
  }
  if (typeof p.includeMemory !== "boolean") errs.push({ field: f("includeMemory"), message: "must be true or false" });
  if (typeof p.loadAdaptive !== "boolean") errs.push({ field: f("loadAdaptive"), message: "must be true or false" });
  if (p.liveSnapshot !== "auto" && p.liveSnapshot !== "never") {
    errs.push({ field: f("liveSnapshot"), message: `must be "auto" or "never", got ${show(p.liveSnapshot)}` });
  }
  if (p.onDestroy !== "keep" && p.onDestroy !== "delete") {
    errs.push({ field: f("onDestroy"), message: `must be "keep" or "delete", got ${show(p.onDestroy)}` });
  }
  if (typeof p.repository !== "string" || p.repository.trim() === "") {
    errs.push({ field: f("repository"), message: "must name where snapshots are kept" });
  }
  return errs;
}

export interface ProtectionInput {
  backend: BackendKind;
  name: string;
  primaryHost: string;
  recoveryHosts: string[];
  policy: Partial<SnapshotPolicy>;
}

/** Validate everything about a protected VM that can be judged without touching a host. */
export function validateProtection(p: ProtectionInput): ValidationError[] {
  const errs: ValidationError[] = [];
  if (p.backend !== "libvirt" && p.backend !== "cloudstack") {
    errs.push({ field: "backend", message: `must be "libvirt" or "cloudstack", got ${show(p.backend)}` });
  }
  if (typeof p.name !== "string" || !DOMAIN_NAME_PATTERN.test(p.name)) {
    errs.push({ field: "name", message: `${JSON.stringify(p.name)} is not a valid VM name (letters, digits, '_', '.', '-'; starts with a letter or digit; at most 63 characters)` });
  }
  const hostOk = (h: unknown) => typeof h === "string" && h !== "" && (p.backend !== "libvirt" || isLibvirtUri(h));
  if (!hostOk(p.primaryHost)) {
    errs.push({ field: "primaryHost", message: `${JSON.stringify(p.primaryHost)} is not a known ${p.backend === "libvirt" ? "libvirt URI (e.g. qemu:///system, qemu+ssh://host/system)" : "host id"}` });
  }
  if (!Array.isArray(p.recoveryHosts)) {
    errs.push({ field: "recoveryHosts", message: "must be a list of hosts" });
  } else if (p.recoveryHosts.length === 0) {
    errs.push({ field: "recoveryHosts", message: "is empty: a protected VM needs at least one other host to be recovered on" });
  } else {
    const primaryId = hostOk(p.primaryHost) ? hostIdentity(p.primaryHost) : undefined;
    const seen = new Map<string, number>();
    p.recoveryHosts.forEach((h, i) => {
      if (!hostOk(h)) {
        errs.push({ field: `recoveryHosts[${i}]`, message: `${JSON.stringify(h)} is not a known ${p.backend === "libvirt" ? "libvirt URI" : "host id"}` });
        return;
      }
      const id = hostIdentity(h);
      if (h === p.primaryHost) errs.push({ field: `recoveryHosts[${i}]`, message: `${h} is the primary host; a recovery host must be another host` });
      else if (id === primaryId) errs.push({ field: `recoveryHosts[${i}]`, message: `${h} is the primary host ${p.primaryHost} under another spelling (both are ${id}); a recovery host must be another host` });
      else if (seen.has(id)) errs.push({ field: `recoveryHosts[${i}]`, message: `${h} is the same host as recoveryHosts[${seen.get(id)}] (${id})` });
      seen.set(id, i);
    });
  }
  errs.push(...validatePolicy(p.policy));
  if (p.backend === "libvirt") errs.push(...repositoryPathErrors(p.policy.repository));
  if (p.backend === "cloudstack" && typeof p.policy.repository === "string" && !["primary", "secondary"].includes(p.policy.repository)) {
    errs.push({ field: "snapshotPolicy.repository", message: `on CloudStack must be "primary" or "secondary", got ${show(p.policy.repository)}` });
  }
  return errs;
}

/**
 * libvirt: the repository is a path every host reaches. It must be absolute and spelled without
 * `..` (a path that climbs out of where it claims to be is refused rather than resolved: the same
 * string is used on every host, where `..` may lead elsewhere through a symlink).
 */
export function repositoryPathErrors(repository: unknown): ValidationError[] {
  if (typeof repository !== "string" || repository.trim() === "") return []; // reported by validatePolicy
  const field = "snapshotPolicy.repository";
  if (!repository.startsWith("/")) return [{ field, message: `must be an absolute path, got ${JSON.stringify(repository)}` }];
  if (repository.split("/").includes("..")) return [{ field, message: `must not contain "..", got ${JSON.stringify(repository)}` }];
  return [];
}

export class PolicyValidationError extends Error {
  constructor(readonly errors: ValidationError[], subject: string) {
    super(`${subject}: invalid protection settings:\n` + errors.map((e) => `  - ${e.field}: ${e.message}`).join("\n"));
    this.name = "PolicyValidationError";
  }
}
