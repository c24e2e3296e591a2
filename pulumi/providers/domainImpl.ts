/**
 * The logic of the `Domain` dynamic resource: a VM on a libvirt or CloudStack host with its
 * protection record. Required at run time by pulumi/providers/domain.ts; plain data in and out.
 */
import * as fs from "fs";
import * as path from "path";
import type * as pulumi from "@pulumi/pulumi";
import type { VmSpec } from "../../core/model";
import { BackendConnection, createBackend } from "../../hypervisor/createBackend";
import { validateProtection, ValidationError } from "../../core/policy";

export interface DomainInputs {
  connection: BackendConnection;
  spec: VmSpec;
  /** Primary host. */
  host: string;
  recoveryHosts: string[];
  /** Start the VM after defining it. */
  running: boolean;
}

export interface DomainOutputs extends DomainInputs {
  vmId: string;
  /** Where the VM is now: the primary host, or a recovery host after `recover`. */
  currentHost: string;
  state: string;
}

/** Checks that need no host: field by field, so `pulumi preview` names what is wrong. */
export function domainInputErrors(i: DomainInputs): ValidationError[] {
  const errs: ValidationError[] = [];
  const spec = i.spec ?? ({} as VmSpec);
  if (!Number.isInteger(spec.memoryMiB) || spec.memoryMiB < 16) errs.push({ field: "memoryMiB", message: `must be a whole number of MiB >= 16, got ${JSON.stringify(spec.memoryMiB)}` });
  if (!Number.isInteger(spec.vcpus) || spec.vcpus < 1) errs.push({ field: "vcpus", message: `must be a whole number >= 1, got ${JSON.stringify(spec.vcpus)}` });
  if (spec.disk?.sizeMiB !== undefined && !(Number.isInteger(spec.disk.sizeMiB) && spec.disk.sizeMiB > 0)) {
    errs.push({ field: "disk.sizeMiB", message: `must be a whole number of MiB > 0, got ${JSON.stringify(spec.disk.sizeMiB)}` });
  }
  if (i.connection?.kind === "libvirt" && !spec.disk) errs.push({ field: "disk", message: "a protected libvirt VM needs a disk (snapshots capture memory and disk)" });
  if (spec.protection) {
    errs.push(
      ...validateProtection({
        backend: i.connection?.kind,
        name: spec.name,
        primaryHost: i.host,
        recoveryHosts: i.recoveryHosts,
        policy: spec.protection.policy,
      }),
    );
    if (i.connection?.kind === "libvirt") errs.push(...repositoryErrors(spec.protection.policy.repository));
  }
  if (i.connection?.kind === "cloudstack") {
    const { kind: _kind, ...config } = i.connection;
    const { loadCloudStackConfig, validateCloudStackConfig } = require("../../hypervisor/cloudstack/config") as typeof import("../../hypervisor/cloudstack/config");
    errs.push(...validateCloudStackConfig(loadCloudStackConfig(config)));
    if (!spec.cloudstack) errs.push({ field: "cloudstack.placement", message: "is required with backend cloudstack (zoneId, serviceOfferingId, templateId)" });
  }
  if (!spec.protection && !spec.name) errs.push({ field: "name", message: "is required" });
  return errs;
}

/** The repository must be a directory we can write (or create) now, not at the first snapshot. */
export function repositoryErrors(repository: string | undefined): ValidationError[] {
  if (typeof repository !== "string" || repository === "") return [];
  const field = "snapshotPolicy.repository";
  if (!path.isAbsolute(repository)) return [{ field, message: `must be an absolute path, got ${JSON.stringify(repository)}` }];
  let probe = repository;
  while (!fs.existsSync(probe)) {
    const up = path.dirname(probe);
    if (up === probe) break;
    probe = up;
  }
  try {
    if (!fs.statSync(probe).isDirectory()) return [{ field, message: `${probe} is not a directory` }];
    fs.accessSync(probe, fs.constants.W_OK | fs.constants.X_OK);
  } catch {
    return [{ field, message: `${repository} is not writable (checked ${probe})` }];
  }
  return [];
}

export async function check(_olds: DomainInputs, news: DomainInputs): Promise<pulumi.dynamic.CheckResult> {
  const failures = domainInputErrors(news).map((e) => ({ property: e.field, reason: `${e.field}: ${e.message}` }));
  return failures.length ? { inputs: news, failures } : { inputs: news };
}

const REPLACE_KEYS = ["connection.kind", "spec.name", "host", "spec.disk", "spec.cloudstack"] as const;

function pick(o: unknown, dotted: string): unknown {
  return dotted.split(".").reduce<any>((acc, k) => (acc == null ? acc : acc[k]), o);
}

const same = (a: unknown, b: unknown) => JSON.stringify(a ?? null) === JSON.stringify(b ?? null);

export async function diff(_id: string, olds: DomainOutputs, news: DomainInputs): Promise<pulumi.dynamic.DiffResult> {
  const replaces = REPLACE_KEYS.filter((k) => !same(pick(olds, k), pick(news, k))).map((k) => k.split(".").pop()!);
  const inPlace = ["spec.memoryMiB", "spec.vcpus", "spec.boot", "spec.network", "spec.protection", "recoveryHosts", "running", "connection"]
    .filter((k) => !same(pick(olds, k), pick(news, k)));
  return {
    changes: replaces.length > 0 || inPlace.length > 0,
    replaces,
    // The new VM has the same name: the old one must go first.
    deleteBeforeReplace: true,
  };
}

function hostsOf(i: DomainInputs & Partial<DomainOutputs>): string[] {
  return [...new Set([i.currentHost, i.host, ...(i.recoveryHosts ?? [])].filter((h): h is string => !!h))];
}

export async function create(inputs: DomainInputs): Promise<pulumi.dynamic.CreateResult> {
  const backend = createBackend(inputs.connection);
  if (!(await backend.hostAlive(inputs.host))) {
    throw new Error(`host: cannot reach ${inputs.host}; nothing was created`);
  }
  if (inputs.connection.kind === "libvirt") {
    // Never take over (and redefine) a VM this stack did not create.
    const existing = await backend.findVm(inputs.spec.name, [inputs.host]);
    if (existing) {
      throw new Error(`name: a domain named ${inputs.spec.name} already exists on ${inputs.host} (${existing.state}); remove it or choose another vmName - nothing was created`);
    }
  }
  const info = await backend.defineVm(inputs.spec, inputs.host);
  try {
    if (inputs.running) await backend.startVm({ name: inputs.spec.name, host: inputs.host });
  } catch (e) {
    // Leave nothing half-created.
    await backend.deleteVm({ name: inputs.spec.name, host: inputs.host }).catch(() => undefined);
    throw e;
  }
  const outs: DomainOutputs = { ...inputs, vmId: info.id, currentHost: inputs.host, state: inputs.running ? "running" : info.state };
  return { id: inputs.spec.name, outs };
}

export async function read(id: string, props: DomainOutputs): Promise<pulumi.dynamic.ReadResult> {
  const backend = createBackend(props.connection);
  const hosts = hostsOf(props);
  const info = await backend.findVm(props.spec.name, hosts);
  if (info) return { id, props: { ...props, vmId: info.id, currentHost: info.host, state: info.state } };
  // Not found: gone only if every host answered; otherwise we cannot tell (a host is down).
  const alive = await Promise.all(hosts.map((h) => backend.hostAlive(h)));
  if (alive.every(Boolean)) return { id: "", props: {} };
  return { id, props: { ...props, state: "unknown" } };
}

export async function update(_id: string, olds: DomainOutputs, news: DomainInputs): Promise<pulumi.dynamic.UpdateResult> {
  const backend = createBackend(news.connection);
  const found = await backend.findVm(news.spec.name, hostsOf({ ...news, currentHost: olds.currentHost }));
  const host = found?.host ?? olds.currentHost ?? news.host;
  const vm = { name: news.spec.name, host };
  const specChanged = ["memoryMiB", "vcpus", "boot", "network"].some((k) => !same((olds.spec as any)[k], (news.spec as any)[k]));
  if (specChanged) {
    // Redefines the persistent config; memory and vCPU changes apply at the next boot.
    await backend.defineVm(news.spec, host);
  } else if (news.spec.protection && !same(olds.spec.protection, news.spec.protection)) {
    await backend.setProtection(vm, news.spec.protection);
  }
  if (news.running && !olds.running) await backend.startVm(vm);
  if (!news.running && olds.running) await backend.stopVm(vm);
  const info = await backend.findVm(news.spec.name, [host]);
  return { outs: { ...news, vmId: info?.id ?? olds.vmId, currentHost: host, state: info?.state ?? "unknown" } };
}

export async function remove(_id: string, props: DomainOutputs): Promise<void> {
  const backend = createBackend(props.connection);
  // After a recovery a stale copy may be defined on the old host too: remove it wherever it is.
  for (const host of hostsOf(props)) {
    if (!(await backend.hostAlive(host))) continue;
    const info = await backend.findVm(props.spec.name, [host]);
    if (info) await backend.deleteVm({ name: props.spec.name, host });
  }
}
