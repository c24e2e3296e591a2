/**
 * Domain lifecycle over virsh: define, start, stop, delete, find, state, CPU usage. Every call
 * is an argv array for one libvirt URI; XML goes through temp files, never through a shell.
 */
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import type { VmInfo, VmState } from "../backend";
import type { ProtectionRecord } from "../../core/policy";
import { VirshError, VirshRunner } from "./virsh";
import { parseDomainXml } from "./domainXml";
import { PROTECTION_NS, PROTECTION_PREFIX, parseProtectionElement, protectionElementForSet } from "./metadata";

export function stateFromVirsh(s: string): VmState {
  const t = s.trim().toLowerCase();
  if (t.startsWith("running") || t === "blocked" || t === "idle") return "running";
  if (t.startsWith("paused") || t.startsWith("pmsuspended")) return "paused";
  if (t.startsWith("shut") || t === "in shutdown") return "shutoff";
  if (t === "crashed") return "crashed";
  return "unknown";
}

/** Write XML to a private temp file for `virsh define FILE` / `restore --xml FILE`; removed after use. */
export async function withXmlFile<T>(xml: string, fn: (file: string) => Promise<T>): Promise<T> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "pv-xml-"));
  const file = path.join(dir, "domain.xml");
  fs.writeFileSync(file, xml, { mode: 0o600 });
  try {
    return await fn(file);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

export async function defineXml(virsh: VirshRunner, uri: string, xml: string): Promise<void> {
  await withXmlFile(xml, (file) => virsh.run(uri, ["define", file]));
}

/** The domain's state on uri, or "missing" when the host has no such domain. */
export async function domainState(virsh: VirshRunner, uri: string, name: string): Promise<VmState> {
  try {
    const { stdout } = await virsh.run(uri, ["domstate", name], { timeoutMs: 15_000 });
    return stateFromVirsh(stdout);
  } catch (e) {
    if (e instanceof VirshError && e.notFound) return "missing";
    throw e;
  }
}

export async function readProtection(virsh: VirshRunner, uri: string, name: string): Promise<ProtectionRecord | undefined> {
  try {
    const { stdout } = await virsh.run(uri, ["metadata", name, "--uri", PROTECTION_NS]);
    return parseProtectionElement(stdout);
  } catch (e) {
    if (e instanceof VirshError && /metadata not found|no metadata/i.test(e.stderr)) return undefined;
    throw e;
  }
}

/** Store the record in the persistent config and, when running, in the live domain too. */
export async function writeProtection(virsh: VirshRunner, uri: string, name: string, record: ProtectionRecord): Promise<void> {
  const state = await domainState(virsh, uri, name);
  const args = ["metadata", name, "--uri", PROTECTION_NS, "--key", PROTECTION_PREFIX, "--set", protectionElementForSet(record), "--config"];
  if (state === "running" || state === "paused") args.push("--live");
  await virsh.run(uri, args);
}

export async function vmInfo(virsh: VirshRunner, uri: string, name: string): Promise<VmInfo | undefined> {
  const state = await domainState(virsh, uri, name);
  if (state === "missing") return undefined;
  const { stdout } = await virsh.run(uri, ["dumpxml", name]);
  const parsed = parseDomainXml(stdout);
  return {
    name,
    id: parsed.uuid,
    host: uri,
    state,
    memoryMiB: parsed.memoryMiB,
    vcpus: parsed.vcpus,
    protection: parsed.metadataXml ? parseProtectionElement(parsed.metadataXml) : await readProtection(virsh, uri, name),
  };
}

export async function startDomain(virsh: VirshRunner, uri: string, name: string): Promise<void> {
  const state = await domainState(virsh, uri, name);
  if (state === "running") return;
  if (state === "paused") {
    await virsh.run(uri, ["resume", name]);
    return;
  }
  await virsh.run(uri, ["start", name]);
}

/** Graceful shutdown with a deadline, then pull the plug; force pulls it at once. */
export async function stopDomain(virsh: VirshRunner, uri: string, name: string, force = false, graceMs = 20_000): Promise<void> {
  let state = await domainState(virsh, uri, name);
  if (state === "missing" || state === "shutoff") return;
  if (!force) {
    await virsh.run(uri, ["shutdown", name]).catch(() => undefined);
    const deadline = Date.now() + graceMs;
    while (Date.now() < deadline) {
      state = await domainState(virsh, uri, name);
      if (state === "shutoff" || state === "missing") return;
      await new Promise((r) => setTimeout(r, 500));
    }
  }
  try {
    await virsh.run(uri, ["destroy", name]);
  } catch (e) {
    if (!(e instanceof VirshError && (e.notFound || /not running/i.test(e.stderr)))) throw e;
  }
}

export async function undefineDomain(virsh: VirshRunner, uri: string, name: string): Promise<void> {
  try {
    await virsh.run(uri, ["undefine", name, "--managed-save", "--snapshots-metadata"]);
  } catch (e) {
    if (!(e instanceof VirshError && e.notFound)) throw e;
  }
}

/** CPU usage in % of the domain's vCPUs, from two cpu.time samples (ns) sampleMs apart. */
export async function cpuPercent(virsh: VirshRunner, uri: string, name: string, sampleMs = 1000): Promise<number> {
  const sample = async () => {
    const { stdout } = await virsh.run(uri, ["domstats", name, "--cpu-total", "--vcpu"]);
    const time = /cpu\.time=(\d+)/.exec(stdout);
    const vcpus = /vcpu\.current=(\d+)/.exec(stdout);
    if (!time) throw new Error(`no cpu.time in domstats of ${name} on ${uri}`);
    return { ns: Number(time[1]), vcpus: vcpus ? Number(vcpus[1]) : 1, at: process.hrtime.bigint() };
  };
  const a = await sample();
  await new Promise((r) => setTimeout(r, sampleMs));
  const b = await sample();
  const wallNs = Number(b.at - a.at);
  const pct = ((b.ns - a.ns) / (wallNs * Math.max(1, b.vcpus))) * 100;
  return Math.max(0, Math.min(100, pct));
}

export async function listDomainNames(virsh: VirshRunner, uri: string): Promise<string[]> {
  const { stdout } = await virsh.run(uri, ["list", "--all", "--name"]);
  return stdout.split("\n").map((s) => s.trim()).filter(Boolean);
}
