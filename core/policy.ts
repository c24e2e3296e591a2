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

function isPositiveNumber(v: unknown): v is number {
  return typeof v === "number" && Number.isFinite(v) && v > 0;
}

/** Check a policy; every error names the field it is about. Pure: touches no disk or network. */
export function validatePolicy(p: Partial<SnapshotPolicy>, prefix = "snapshotPolicy"): ValidationError[] {
  const errs: ValidationError[] = [];
  const f = (name: string) => `${prefix}.${name}`;
  if (!isPositiveNumber(p.minIntervalSeconds)) {
    errs.push({ field: f("minIntervalSeconds"), message: `must be a number of seconds > 0, got ${JSON.stringify(p.minIntervalSeconds)}` });
  }
  if (!isPositiveNumber(p.maxIntervalSeconds)) {
    errs.push({ field: f("maxIntervalSeconds"), message: `must be a number of seconds > 0, got ${JSON.stringify(p.maxIntervalSeconds)}` });
  }
  if (isPositiveNumber(p.minIntervalSeconds) && isPositiveNumber(p.maxIntervalSeconds) && p.minIntervalSeconds > p.maxIntervalSeconds) {
    errs.push({ field: f("minIntervalSeconds"), message: `(${p.minIntervalSeconds}) must not exceed maxIntervalSeconds (${p.maxIntervalSeconds})` });
  }
  for (const k of ["cpuIdlePercent", "cpuBusyPercent"] as const) {
    const v = p[k];
    if (typeof v !== "number" || !(v >= 0 && v <= 100)) errs.push({ field: f(k), message: `must be a percentage 0..100, got ${JSON.stringify(v)}` });
  }
  if (typeof p.cpuIdlePercent === "number" && typeof p.cpuBusyPercent === "number" && p.cpuIdlePercent >= p.cpuBusyPercent) {
    errs.push({ field: f("cpuIdlePercent"), message: `(${p.cpuIdlePercent}) must be below cpuBusyPercent (${p.cpuBusyPercent})` });
  }
  if (typeof p.keepLast !== "number" || !Number.isInteger(p.keepLast) || p.keepLast < 1) {
    errs.push({ field: f("keepLast"), message: `retention must keep at least 1 snapshot, got ${JSON.stringify(p.keepLast)}` });
  }
  if (p.maxAgeSeconds !== undefined && !isPositiveNumber(p.maxAgeSeconds)) {
    errs.push({ field: f("maxAgeSeconds"), message: `must be a number of seconds > 0, got ${JSON.stringify(p.maxAgeSeconds)}` });
  }
  if (isPositiveNumber(p.maxAgeSeconds) && isPositiveNumber(p.maxIntervalSeconds) && p.maxAgeSeconds < p.maxIntervalSeconds) {
    errs.push({ field: f("maxAgeSeconds"), message: `(${p.maxAgeSeconds}) is shorter than maxIntervalSeconds (${p.maxIntervalSeconds}): every snapshot would expire before the next one` });
  }
  if (typeof p.includeMemory !== "boolean") errs.push({ field: f("includeMemory"), message: "must be true or false" });
  if (typeof p.loadAdaptive !== "boolean") errs.push({ field: f("loadAdaptive"), message: "must be true or false" });
  if (p.liveSnapshot !== "auto" && p.liveSnapshot !== "never") {
    errs.push({ field: f("liveSnapshot"), message: `must be "auto" or "never", got ${JSON.stringify(p.liveSnapshot)}` });
  }
  if (p.onDestroy !== "keep" && p.onDestroy !== "delete") {
    errs.push({ field: f("onDestroy"), message: `must be "keep" or "delete", got ${JSON.stringify(p.onDestroy)}` });
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
    errs.push({ field: "backend", message: `must be "libvirt" or "cloudstack", got ${JSON.stringify(p.backend)}` });
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
  } else {
    p.recoveryHosts.forEach((h, i) => {
      if (!hostOk(h)) errs.push({ field: `recoveryHosts[${i}]`, message: `${JSON.stringify(h)} is not a known ${p.backend === "libvirt" ? "libvirt URI" : "host id"}` });
      else if (h === p.primaryHost) errs.push({ field: `recoveryHosts[${i}]`, message: `${h} is the primary host; a recovery host must be another host` });
    });
  }
  errs.push(...validatePolicy(p.policy));
  if (p.backend === "cloudstack" && typeof p.policy.repository === "string" && !["primary", "secondary"].includes(p.policy.repository)) {
    errs.push({ field: "snapshotPolicy.repository", message: `on CloudStack must be "primary" or "secondary", got ${JSON.stringify(p.policy.repository)}` });
  }
  return errs;
}

export class PolicyValidationError extends Error {
  constructor(readonly errors: ValidationError[], subject: string) {
    super(`${subject}: invalid protection settings:\n` + errors.map((e) => `  - ${e.field}: ${e.message}`).join("\n"));
    this.name = "PolicyValidationError";
  }
}
