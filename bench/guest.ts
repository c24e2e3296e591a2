/**
 * Bench guests on the lab: boot one with a load, wait until it works, find its QEMU process,
 * remove it again. Every bench domain is named pvbench-* so cleanup can never touch others'.
 */
import * as fs from "fs";
import * as path from "path";
import { LibvirtBackend } from "../provider/libvirt/backend";
import type { VmRef, VmSpec } from "../provider/backend";
import type { ProtectionRecord } from "../components/policy";
import { withPolicyDefaults } from "../components/policy";
import { VirshRunner } from "../provider/libvirt/virsh";
import { LabState, cleanupDomains, guestCmdline, removeFiles, waitForConsole } from "../test/support/lab";
import { LogTail, PtyTap } from "./console";

export const PREFIX = "pvbench-";
export const TICK_MS = 5;

export interface GuestLoad {
  memMiB: number;
  /** % of guest RAM filled with non-zero data that is rewritten continuously. */
  fillPct: number;
  /** Rewrite rate limit MiB/s; 0 = flat out. */
  rateMiBs?: number;
  tickMs?: number;
}

export function benchName(kind: string, ...parts: Array<string | number>): string {
  return [PREFIX + kind, ...parts, Date.now().toString(36).slice(-5)].join("-");
}

export function guestSpec(lab: LabState, name: string, load: GuestLoad, protection?: ProtectionRecord): VmSpec {
  const cmdline = guestCmdline(
    { fill: load.fillPct > 0 ? load.fillPct : undefined, mem: load.fillPct > 0 ? undefined : 0, rate: load.rateMiBs ?? 0, tick: load.tickMs ?? TICK_MS },
    lab.guest.cmdline ?? undefined,
  );
  return {
    name,
    memoryMiB: load.memMiB,
    vcpus: 1,
    disk: { sizeMiB: 64, pool: lab.hosts.a.pool },
    boot: { kernel: lab.guest.kernel, initrd: lab.guest.initrd, cmdline },
    protection,
  };
}

export function protectionFor(lab: LabState, repository: string, policy: Partial<ReturnType<typeof withPolicyDefaults>> = {}): ProtectionRecord {
  return {
    version: 1,
    backend: "libvirt",
    primaryHost: lab.hosts.a.uri,
    recoveryHosts: [lab.hosts.b.uri],
    policy: withPolicyDefaults({ ...policy, repository }),
    pool: lab.hosts.a.pool,
  };
}

export interface RunningGuest {
  ref: VmRef;
  spec: VmSpec;
  log: string;
  /** Host-timestamped console lines (pty). */
  tap: PtyTap;
  /** Host time (ms) the start command returned. */
  startedAt: number;
}

/** Define + start on host, open the pty, wait until the load is in place (PVREADY) and counting. */
export async function bootGuest(backend: LibvirtBackend, host: string, spec: VmSpec, logDir: string, timeoutMs = 600_000): Promise<RunningGuest> {
  const log = path.join(logDir, `${spec.name}.console.log`);
  removeFiles(log);
  await backend.defineVm(spec, host);
  await backend.startVm({ name: spec.name, host });
  const startedAt = Date.now();
  const tap = await PtyTap.open(backend.virsh, host, spec.name);
  try {
    // PVREADY may come before the pty is open: look for it in the log file.
    await waitForConsole(log, /^PVREADY/m, timeoutMs);
    await tap.next(/^PVCOUNT /, 30_000);
  } catch (e) {
    const tail = fs.existsSync(log) ? fs.readFileSync(log, "utf8").split("\n").slice(-8).join("\n") : "(no log)";
    tap.close();
    throw new Error(`${spec.name} did not get ready: ${(e as Error).message}\n${tail}`);
  }
  return { ref: { name: spec.name, host }, spec, log, tap, startedAt };
}

/** PIDs of the QEMU process running domain `name` (matched on its -name guest=<name>, argument). */
export function qemuPids(name: string): number[] {
  const out: number[] = [];
  for (const d of fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    let argv: string[];
    try {
      argv = fs.readFileSync(`/proc/${d}/cmdline`, "latin1").split("\0");
    } catch {
      continue;
    }
    if (!/qemu-system/.test(argv[0] ?? "")) continue;
    const i = argv.indexOf("-name");
    if (i >= 0 && (argv[i + 1] ?? "").split(",").some((p) => p === `guest=${name}`)) out.push(Number(d));
  }
  return out;
}

/** Remove a bench domain and its files from a host; never throws. */
export async function removeGuest(backend: LibvirtBackend, ref: VmRef): Promise<void> {
  await backend.deleteVm(ref).catch(() => undefined);
}

/** Last-resort cleanup of every pvbench-* domain on both hosts, and their files in the pools. */
export async function cleanupAll(lab: LabState, virsh: VirshRunner): Promise<void> {
  for (const h of [lab.hosts.a, lab.hosts.b]) {
    await cleanupDomains(h.uri, PREFIX, virsh);
    try {
      for (const f of fs.readdirSync(h.storageDir)) if (f.startsWith(PREFIX)) removeFiles(path.join(h.storageDir, f));
    } catch {
      /* pool dir missing */
    }
    await virsh.run(h.uri, ["pool-refresh", h.pool]).catch(() => undefined);
  }
}

export { LogTail };
