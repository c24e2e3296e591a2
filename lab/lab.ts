/**
 * The local lab (lab/lab.sh): two independent libvirt hosts "a" and "b", a shared snapshot
 * repository and a test guest. Used by the lab tests, the integration tests and the benchmarks.
 *
 * Host facts worth knowing:
 * - Each host is a session-mode daemon run by its own user (state.hosts.X.user). Its QEMU
 *   processes run as that user: any file a domain must open (disk, state file to restore) has
 *   to be readable/writable by that user - use chownForHost() on files root created, or create
 *   disks through the host's storage pool (`virsh vol-create-as pvlab ...`).
 * - `virsh save` writes its state file mode 0600 owned by the saving host's user: another host
 *   cannot read it from the repository as is; copy it and chownForHost() it (see saveRestore.test.ts).
 * - Guest: the kernel command line takes `pv.mem=<MiB>` | `pv.fill=<%>`, `pv.rate=<MiB/s>`,
 *   `pv.tick=<ms>`; the console shows `PVCOUNT <n> <work>` every second (n survives
 *   save/restore, restarts at 1 on reboot), `PVREADY mem=<MiB>`, `T <k>` ticks.
 */
import { execFile, spawn } from "child_process";
import * as fs from "fs";
import * as path from "path";
import { ExecVirsh, VirshError, VirshRunner } from "../hypervisor/libvirt/virsh";
import { LibvirtBackend } from "../hypervisor/libvirt/backend";
import { SnapshotRepository } from "../repository/repository";

export interface LabHost {
  /** "a" or "b". */
  name: string;
  /** libvirt connection URI, e.g. qemu:///session?socket=/repo/.lab/a/run/libvirt/libvirt-sock */
  uri: string;
  /** Directory of this host's storage pool (owned by its user). */
  storageDir: string;
  /** Storage pool name (a `dir` pool on storageDir). */
  pool: string;
  /** Unix user the daemon and its QEMU processes run as. */
  user?: string;
  uid?: number;
  gid?: number;
  daemonLog?: string;
}

export interface LabState {
  hosts: { a: LabHost; b: LabHost };
  /** Shared snapshot repository (mode 1777): stands in for storage every host can reach. */
  repository: string;
  sharedGroup?: string;
  sharedGid?: number;
  guest: {
    kernel: string;
    initrd: string;
    /** Base kernel command line: "quiet console=ttyS0"; append pv.* options. */
    cmdline?: string;
  };
}

/** The repository root: the nearest ancestor of this file holding lab/lab.sh (works from dist/ too). */
export function repoRoot(): string {
  let dir = __dirname;
  for (;;) {
    if (fs.existsSync(path.join(dir, "lab", "lab.sh"))) return dir;
    const up = path.dirname(dir);
    if (up === dir) throw new Error(`lab/lab.sh not found above ${__dirname}`);
    dir = up;
  }
}

export function labStatePath(): string {
  return path.join(repoRoot(), ".lab", "state.json");
}

export const GUEST_BASE_CMDLINE = "quiet console=ttyS0";

function onPath(cmd: string): boolean {
  const dirs = (process.env.PATH || "").split(":").concat(["/usr/sbin", "/sbin", "/usr/bin", "/bin"]);
  return dirs.some((d) => {
    try {
      fs.accessSync(path.join(d, cmd), fs.constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
}

/**
 * True when the lab can run here: Linux, root, and libvirt (virsh + a daemon) and QEMU
 * installed - or apt-get present so `lab.sh up` can install them (fresh CI machine).
 * PROTECTED_VM_SKIP_LAB=1 forces false.
 */
export function labAvailable(): boolean {
  if (process.env.PROTECTED_VM_SKIP_LAB === "1") return false;
  if (process.platform !== "linux" || typeof process.getuid !== "function" || process.getuid() !== 0) return false;
  const installed = onPath("virsh") && (onPath("virtqemud") || onPath("libvirtd")) && onPath("qemu-system-x86_64") && onPath("qemu-img");
  return installed || onPath("apt-get");
}

export function readLabState(): LabState {
  const file = labStatePath();
  let text: string;
  try {
    text = fs.readFileSync(file, "utf8");
  } catch (e) {
    throw new Error(`lab state ${file} not found: run 'npm run lab -- up' (${(e as Error).message})`);
  }
  const s = JSON.parse(text) as LabState;
  if (!s.hosts?.a?.uri || !s.hosts?.b?.uri || !s.repository || !s.guest?.kernel) throw new Error(`lab state ${file} is incomplete`);
  return s;
}

function runLabScript(args: string[], inheritOutput: boolean): Promise<{ code: number; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn("bash", [path.join(repoRoot(), "lab", "lab.sh"), ...args], {
      cwd: repoRoot(),
      stdio: ["ignore", "pipe", "pipe"],
    });
    let output = "";
    const onData = (d: Buffer) => {
      output += d.toString();
      if (inheritOutput) process.stderr.write(d);
    };
    child.stdout.on("data", onData);
    child.stderr.on("data", onData);
    child.on("error", reject);
    child.on("close", (code) => resolve({ code: code ?? -1, output }));
  });
}

/** Bring the lab up unless it already is; returns its state. Logs how long it took. */
export async function ensureLab(): Promise<LabState> {
  const t0 = Date.now();
  const status = await runLabScript(["status"], false);
  if (status.code === 0) {
    const s = readLabState();
    console.log(`lab: already up (checked in ${Date.now() - t0} ms)`);
    return s;
  }
  const up = await runLabScript(["up"], true);
  if (up.code !== 0) throw new Error(`'bash lab/lab.sh up' failed (exit ${up.code}):\n${up.output.slice(-4000)}`);
  console.log(`lab: brought up in ${Date.now() - t0} ms`);
  return readLabState();
}

/** Kernel command line for the test guest: base + pv.* options, e.g. { mem: 64, tick: 10 }. */
export function guestCmdline(opts: { mem?: number; fill?: number; rate?: number; tick?: number } = {}, base = GUEST_BASE_CMDLINE): string {
  const parts = [base];
  if (opts.mem !== undefined) parts.push(`pv.mem=${opts.mem}`);
  if (opts.fill !== undefined) parts.push(`pv.fill=${opts.fill}`);
  if (opts.rate !== undefined) parts.push(`pv.rate=${opts.rate}`);
  if (opts.tick !== undefined) parts.push(`pv.tick=${opts.tick}`);
  return parts.join(" ");
}

function readIfExists(file: string): string {
  try {
    return fs.readFileSync(file, "utf8");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return "";
    throw e;
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Poll a console log until `regex` matches its content; rejects with the log's tail on timeout. */
export async function waitForConsole(logPath: string, regex: RegExp, timeoutMs: number): Promise<RegExpMatchArray> {
  const deadline = Date.now() + timeoutMs;
  const re = new RegExp(regex.source, regex.flags.replace("g", "").replace("y", ""));
  for (;;) {
    const text = readIfExists(logPath);
    const m = text.match(re);
    if (m) return m;
    if (Date.now() >= deadline) {
      const tail = text.split("\n").slice(-15).join("\n");
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${regex} in ${logPath}; last lines:\n${tail || "(empty or missing)"}`);
    }
    await sleep(100);
  }
}

const PVCOUNT_RE = /^PVCOUNT (\d+) (\d+)\r?$/gm;

/** Every PVCOUNT line of a console log: counter n and cumulative work (pages rewritten). */
export function counters(logPath: string): Array<{ n: number; work: number }> {
  const out: Array<{ n: number; work: number }> = [];
  for (const m of readIfExists(logPath).matchAll(PVCOUNT_RE)) out.push({ n: Number(m[1]), work: Number(m[2]) });
  return out;
}

/** The last PVCOUNT counter in a console log, or undefined when there is none yet. */
export function lastCounter(logPath: string): number | undefined {
  const all = counters(logPath);
  return all.length ? all[all.length - 1].n : undefined;
}

/** The first PVCOUNT counter in a console log. */
export function firstCounter(logPath: string): number | undefined {
  return counters(logPath)[0]?.n;
}

/** Wait until the console shows PVCOUNT >= n; returns the counter seen. */
export async function waitForCounter(logPath: string, n: number, timeoutMs: number): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const last = lastCounter(logPath);
    if (last !== undefined && last >= n) return last;
    if (Date.now() >= deadline) {
      const tail = readIfExists(logPath).split("\n").slice(-10).join("\n");
      throw new Error(`timed out after ${timeoutMs} ms waiting for PVCOUNT >= ${n} in ${logPath} (last: ${last}); tail:\n${tail}`);
    }
    await sleep(100);
  }
}

/** Destroy and undefine every domain on uri whose name starts with namePrefix. Never throws. */
export async function cleanupDomains(uri: string, namePrefix: string, virsh: VirshRunner = new ExecVirsh()): Promise<string[]> {
  if (!namePrefix) throw new Error("cleanupDomains: empty name prefix would remove every domain");
  let names: string[];
  try {
    names = (await virsh.run(uri, ["list", "--all", "--name"], { timeoutMs: 30_000 })).stdout
      .split("\n")
      .map((s) => s.trim())
      .filter((s) => s.startsWith(namePrefix));
  } catch {
    return [];
  }
  for (const name of names) {
    await virsh.run(uri, ["destroy", name], { timeoutMs: 60_000 }).catch(() => undefined);
    await virsh
      .run(uri, ["undefine", name, "--managed-save", "--snapshots-metadata", "--checkpoints-metadata"], { timeoutMs: 60_000 })
      .catch((e: unknown) =>
        e instanceof VirshError && e.notFound ? undefined : virsh.run(uri, ["undefine", name], { timeoutMs: 60_000 }).catch(() => undefined),
      );
  }
  return names;
}

/** Give a file root created to the host's user (so its QEMU can open it); mode 0600 by default. */
export function chownForHost(host: LabHost, file: string, mode = 0o600): void {
  if (host.uid === undefined || host.gid === undefined) throw new Error(`lab host ${host.name} has no uid/gid in state.json`);
  fs.chownSync(file, host.uid, host.gid);
  fs.chmodSync(file, mode);
}

/** Run a command (argv, no shell); resolves with stdout, rejects with stderr in the message. */
export function run(cmd: string, args: string[], timeoutMs = 300_000): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024, env: { ...process.env, LC_ALL: "C" } }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${cmd} ${args.join(" ")} failed: ${String(stderr).trim() || err.message}`));
      else resolve(String(stdout));
    });
  });
}

/** Create an empty qcow2 disk in a host's storage dir, owned by the host's user. */
export async function createDisk(host: LabHost, file: string, sizeMiB = 64): Promise<void> {
  await run("qemu-img", ["create", "-q", "-f", "qcow2", file, `${sizeMiB}M`]);
  chownForHost(host, file);
}

/** Copy a disk image (also while a guest uses it: -U) to `dest`, owned by `host`'s user. */
export async function copyDisk(src: string, dest: string, host: LabHost): Promise<void> {
  await run("qemu-img", ["convert", "-U", "-q", "-O", "qcow2", src, dest]);
  chownForHost(host, dest);
}

/** Copy a file (e.g. a save image) to `dest`, owned by `host`'s user. */
export async function copyFileForHost(src: string, dest: string, host: LabHost): Promise<void> {
  await fs.promises.copyFile(src, dest);
  chownForHost(host, dest);
}

/** Remove files (and directories, recursively), ignoring ones already gone. */
export function removeFiles(...files: string[]): void {
  for (const f of files) {
    try {
      fs.rmSync(f, { force: true, recursive: true });
    } catch {
      /* best effort */
    }
  }
}

/**
 * Removes every trace of a lab test's VM, for afterAll: the VM (with its disk) and any domain
 * whose name starts with `vm` on both hosts, and all of its snapshots in the shared repository.
 */
export async function removeLabVm(lab: LabState, vm: string): Promise<void> {
  for (const h of [lab.hosts.a, lab.hosts.b]) {
    await new LibvirtBackend({ pool: h.pool }).deleteVm({ name: vm, host: h.uri }).catch(() => undefined);
    await cleanupDomains(h.uri, vm);
  }
  const repo = new SnapshotRepository(lab.repository);
  for (const s of await repo.list(vm)) await repo.delete(vm, s.id);
}
