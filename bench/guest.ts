/**
 * Bench guests on the lab: boot one with a load, wait until it works, find its QEMU process,
 * remove it again. Every bench domain is named pvbench-* so cleanup can never touch others'.
 */
import * as fs from "fs";
import * as path from "path";
import { LibvirtBackend } from "../hypervisor/libvirt/backend";
import type { VmRef, VmSpec } from "../core/model";
import type { ProtectionRecord } from "../core/policy";
import { withPolicyDefaults } from "../core/policy";
import { VirshRunner } from "../hypervisor/libvirt/virsh";
import { LabState, cleanupDomains, guestCmdline, removeFiles } from "../lab/lab";
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

/**
 * The guest's kernel and initramfs keep ~50 MiB of its RAM, and the load needs headroom beyond
 * that or the guest's OOM killer ends it (a 256 MiB guest cannot hold 90 % of its MemTotal).
 * So the fill is pv.fill=<load> % of MemTotal, capped at guest RAM - FILL_HEADROOM_MIB (then given
 * as pv.mem). The MiB actually filled is read back from the guest (PVREADY mem=) and recorded.
 */
export const FILL_HEADROOM_MIB = 110;
export function fillArgs(memMiB: number, fillPct: number): { fill?: number; mem?: number } {
  if (fillPct <= 0) return { mem: 0 };
  const estTotal = memMiB - 50;
  const cap = memMiB - FILL_HEADROOM_MIB;
  return (fillPct / 100) * estTotal > cap ? { mem: cap } : { fill: fillPct };
}

export function guestSpec(lab: LabState, name: string, load: GuestLoad, protection?: ProtectionRecord): VmSpec {
  const cmdline = guestCmdline({ ...fillArgs(load.memMiB, load.fillPct), rate: load.rateMiBs ?? 0, tick: load.tickMs ?? TICK_MS }, lab.guest.cmdline ?? undefined);
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
  /** MiB the load program filled (from PVREADY mem=). */
  filledMiB: number;
}

/** Wait for PVREADY in the log; fail fast when the guest program exits or the domain stops. */
async function waitReady(backend: LibvirtBackend, host: string, name: string, log: string, timeoutMs: number): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  for (let i = 0; ; i++) {
    const text = fs.existsSync(log) ? fs.readFileSync(log, "latin1") : "";
    const m = /^PVREADY mem=(\d+)/m.exec(text);
    if (m) return Number(m[1]);
    const dead = /^PVEXIT.*|Out of memory.*/m.exec(text);
    if (dead) throw new Error(`guest program died: ${dead[0]}`);
    if (i % 10 === 9) {
      const st = (await backend.virsh.run(host, ["domstate", name]).catch(() => ({ stdout: "unknown" }))).stdout.trim();
      if (!/running|paused/.test(st)) throw new Error(`domain is ${st}`);
    }
    if (Date.now() > deadline) throw new Error(`no PVREADY within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Define + start on host, open the pty, wait until the load is in place (PVREADY) and counting. */
export async function bootGuest(backend: LibvirtBackend, host: string, spec: VmSpec, logDir: string, timeoutMs = 600_000): Promise<RunningGuest> {
  const log = path.join(logDir, `${spec.name}.console.log`);
  removeFiles(log);
  await backend.defineVm(spec, host);
  await backend.startVm({ name: spec.name, host });
  const startedAt = Date.now();
  const tap = await PtyTap.open(backend.virsh, host, spec.name);
  let filledMiB: number;
  try {
    // PVREADY may come before the pty is open: look for it in the log file.
    filledMiB = await waitReady(backend, host, spec.name, log, timeoutMs);
    await tap.next(/^PVCOUNT /, 30_000);
  } catch (e) {
    const tail = fs.existsSync(log) ? fs.readFileSync(log, "utf8").split("\n").slice(-8).join("\n") : "(no log)";
    tap.close();
    throw new Error(`${spec.name} did not get ready: ${(e as Error).message}\n${tail}`);
  }
  return { ref: { name: spec.name, host }, spec, log, tap, startedAt, filledMiB };
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

/** MiB of a process's anonymous memory backed by host transparent huge pages. */
export function anonHugeMiB(pid: number): number {
  try {
    const m = /^AnonHugePages:\s+(\d+) kB/m.exec(fs.readFileSync(`/proc/${pid}/smaps_rollup`, "utf8"));
    return m ? Number(m[1]) / 1024 : 0;
  } catch {
    return 0;
  }
}

/**
 * Wait until the host's khugepaged has folded most of the guest's RAM into huge pages (QEMU
 * madvises guest RAM; the host's THP mode here is "madvise", khugepaged scans 16 MiB / 10 s).
 * Until then the TCG guest's memory-bound load runs up to ~12x slower, and the switch happens
 * mid-measurement (seen as a jump in the overhead section). Returns the seconds waited.
 */
export async function waitHostHugePages(name: string, memMiB: number, share: number, timeoutS: number): Promise<{ waitedS: number; hugeMiB: number }> {
  const t0 = Date.now();
  const pid = qemuPids(name)[0];
  let huge = 0;
  while (pid && Date.now() - t0 < timeoutS * 1000) {
    huge = anonHugeMiB(pid);
    if (huge >= share * memMiB) break;
    await new Promise((r) => setTimeout(r, 1000));
  }
  return { waitedS: (Date.now() - t0) / 1000, hugeMiB: huge };
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
