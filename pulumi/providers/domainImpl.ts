/**
 * The logic of the `Domain` dynamic resource: a VM on a libvirt or CloudStack host with its
 * protection record. Required at run time by pulumi/providers/domain.ts; plain data in and out.
 */
import * as fs from "fs";
import * as path from "path";
import type * as pulumi from "@pulumi/pulumi";
import type { VmSpec } from "../../core/model";
import { BackendConnection, createBackend } from "../../hypervisor/createBackend";
import { MAX_MEMORY_MIB, show, validateProtection, ValidationError } from "../../core/policy";
import { isLocalUri } from "../../hypervisor/libvirt/hostFiles";

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
  if (!Number.isInteger(spec.memoryMiB) || spec.memoryMiB < 16) errs.push({ field: "memoryMiB", message: `must be a whole number of MiB >= 16, got ${show(spec.memoryMiB)}` });
  else if (spec.memoryMiB > MAX_MEMORY_MIB) {
    errs.push({ field: "memoryMiB", message: `${spec.memoryMiB} MiB is above ${MAX_MEMORY_MIB} MiB (1 TiB): more than QEMU's default x86 guest address width (phys-bits 40) reaches, and every snapshot would write all of it` });
  }
  if (!Number.isInteger(spec.vcpus) || spec.vcpus < 1) errs.push({ field: "vcpus", message: `must be a whole number >= 1, got ${show(spec.vcpus)}` });
  if (spec.disk?.sizeMiB !== undefined && !(Number.isInteger(spec.disk.sizeMiB) && spec.disk.sizeMiB > 0)) {
    errs.push({ field: "disk.sizeMiB", message: `must be a whole number of MiB > 0, got ${show(spec.disk.sizeMiB)}` });
  }
  if (i.connection?.kind === "libvirt") errs.push(...managementHostFileErrors(i));
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
    const cfg = loadCloudStackConfig(config);
    errs.push(...validateCloudStackConfig(cfg), ...cleartextEndpointErrors(cfg));
    if (!spec.cloudstack) errs.push({ field: "cloudstack.placement", message: "is required with backend cloudstack (zoneId, serviceOfferingId, templateId)" });
  }
  if (!spec.protection && !spec.name) errs.push({ field: "name", message: "is required" });
  return errs;
}

/**
 * The repository must be an existing directory we can write, now, not at the first snapshot. It
 * is not created: a repository that is missing is most often shared storage that is not mounted,
 * and snapshots written to the local disk instead would be lost with the host.
 */
export function repositoryErrors(repository: string | undefined): ValidationError[] {
  if (typeof repository !== "string" || repository === "") return [];
  // Not absolute, or with "..": reported by validateProtection (core/policy repositoryPathErrors).
  if (!path.isAbsolute(repository) || repository.split("/").includes("..")) return [];
  const field = "snapshotPolicy.repository";
  let st: fs.Stats;
  try {
    st = fs.statSync(repository);
  } catch {
    return [{ field, message: `${repository} does not exist on this machine; create it on the shared storage every recovery host reaches (is it mounted?)` }];
  }
  if (!st.isDirectory()) return [{ field, message: `${repository} is not a directory` }];
  try {
    fs.accessSync(repository, fs.constants.W_OK | fs.constants.X_OK);
  } catch {
    return [{ field, message: `${repository} is not writable` }];
  }
  return [];
}

/** A readable regular file on this machine, or the reason it is not. */
function fileProblem(file: string): string | undefined {
  if (!path.isAbsolute(file)) return `must be an absolute path, got ${JSON.stringify(file)}`;
  try {
    if (!fs.statSync(file).isFile()) return `${file} is not a regular file`;
    fs.accessSync(file, fs.constants.R_OK);
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "ENOENT" ? `${file} does not exist` : `${file} is not readable`;
  }
  return undefined;
}

/**
 * Files this machine must read: a disk image is uploaded from here (vol-upload), so it is checked
 * at preview. A kernel/initrd is read by the hypervisor host: checked here only when that host is
 * this machine (a local libvirt URI); on a remote host `up` finds out.
 */
export function managementHostFileErrors(i: DomainInputs): ValidationError[] {
  const errs: ValidationError[] = [];
  const image = i.spec?.disk?.image;
  if (typeof image === "string") {
    const why = fileProblem(image);
    if (why) errs.push({ field: "disk.image", message: why });
  }
  if (typeof i.host === "string" && isLocalUri(i.host)) {
    for (const k of ["kernel", "initrd"] as const) {
      const f = i.spec?.boot?.[k];
      if (typeof f !== "string") continue;
      const why = fileProblem(f);
      if (why) errs.push({ field: `boot.${k}`, message: why });
    }
  }
  return errs;
}

/**
 * API keys over plain http can be read by anyone on the path (the key is sent with every
 * request; the signature lets a listener replay it): refused, except to a loopback address, where
 * the traffic never leaves this machine (a local proxy, the test server).
 */
export function cleartextEndpointErrors(cfg: { endpoint?: unknown; apiKey?: unknown; secretKey?: unknown }): ValidationError[] {
  if (typeof cfg.endpoint !== "string" || !(cfg.apiKey || cfg.secretKey)) return [];
  let url: URL;
  try {
    url = new URL(cfg.endpoint);
  } catch {
    return []; // reported by validateCloudStackConfig
  }
  if (url.protocol !== "http:") return [];
  const host = url.hostname.replace(/^\[|\]$/g, "");
  if (host === "localhost" || host === "::1" || /^127\./.test(host)) return [];
  return [{ field: "cloudstack.endpoint", message: `${url.origin} is plain http: the API key would cross the network unencrypted; use https://` }];
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
  // What only the hosts can tell (they answer, the pool is there) is checked before anything is made.
  const problems: string[] = [];
  const hosts: [string, string][] = [["host", inputs.host], ...(inputs.recoveryHosts ?? []).map((h, i): [string, string] => [`recoveryHosts[${i}]`, h])];
  for (const [field, h] of hosts) {
    if (!(await backend.hostAlive(h))) {
      problems.push(`${field}: ${h} does not answer`);
      continue;
    }
    for (const p of (await backend.hostProblems?.(h, inputs.spec)) ?? []) problems.push(`${p.field}: ${p.message} (${field})`);
  }
  if (problems.length) throw new Error(`${problems.join("; ")} - nothing was created`);
  if (inputs.connection.kind === "libvirt") {
    // Never take over (and redefine) a VM this stack did not create.
    const existing = await backend.findVm(inputs.spec.name, [inputs.host]);
    if (existing) {
      throw new Error(`name: a domain named ${inputs.spec.name} already exists on ${inputs.host} (${existing.state}); remove it or choose another vmName - nothing was created`);
    }
  }
  const info = await backend.defineVm(inputs.spec, inputs.host, { create: true });
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
  // deleteVm also removes the VM's files where no domain is defined (a failed create or restore).
  for (const host of hostsOf(props)) {
    if (!(await backend.hostAlive(host))) continue;
    if (props.connection.kind === "libvirt" || (await backend.findVm(props.spec.name, [host]))) await backend.deleteVm({ name: props.spec.name, host });
  }
}
