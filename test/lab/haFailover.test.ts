/**
 * HA acceptance on the lab: real libvirt daemons (hosts a and b), real etcd on loopback, the real
 * `protected-vm agent` (one per host) and `protected-vm manager` (two) as processes, a real guest
 * whose console counts. No recover command is run by the test.
 *   1. Host a dies (SIGKILL of its QEMU, its daemon and its agent): the VM runs on b from its
 *      newest snapshot and its counter continues. Prints failure -> counting again, split into
 *      detection, fencing margin and restore.
 *   2. Host a is cut off from etcd while its guest runs: a's agent destroys its copy, b resumes
 *      it; sampled every 100 ms, never two QEMUs of the VM; after the cut heals nothing restarts on a.
 *   3. The leading manager is killed right after it claims the recovery: the other finishes it;
 *      exactly one copy runs.
 */
import { ChildProcess, spawn } from "child_process";
import * as fs from "fs";
import * as path from "path";
import { LibvirtBackend } from "../../hypervisor/libvirt/backend";
import { ExecVirsh } from "../../hypervisor/libvirt/virsh";
import { withPolicyDefaults } from "../../core/policy";
import { PACKAGE_ROOT } from "../../lib/packageRoot";
import { cleanupDomains, counters, ensureLab, LabState, labAvailable, waitForCounter } from "../../lab/lab";
import { failHost } from "../../lab/hostFailure";
import { etcdAvailable, EtcdCluster, startEtcdCluster } from "../../lab/etcd";
import { CuttableLink, startTcpProxy } from "../../lab/tcpProxy";
import { EtcdCoordination } from "../../ops/coordination/etcd";
import { keys } from "../../core/ha/coordination";
import { SnapshotRepository } from "../../repository/repository";
import { runId } from "../support/cli";

const describeLab = labAvailable() && etcdAvailable() ? describe : describe.skip;
const MAIN = path.join(PACKAGE_ROOT, "dist", "cli", "main.js");
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// Lab timing: host lease 5 s (etcd leases are whole seconds), fence 2.5 s before it can expire,
// fencing margin 3 s. On this loaded 2-core machine (load ~15) a fence (virsh domstate + destroy)
// was measured taking 4.3 s, so safety + margin must exceed that. Defaults: 10 s / 3.3 s / 5 s.
const TTL_MS = 5000;
const FENCE_SAFETY_MS = 2500;
const MARGIN_MS = 3000;

interface Proc {
  name: string;
  child: ChildProcess;
  events: Array<Record<string, any>>;
}

function startProc(name: string, args: string[]): Proc {
  const child = spawn(process.execPath, [MAIN, ...args], { cwd: PACKAGE_ROOT, stdio: ["ignore", "pipe", "pipe"] });
  const p: Proc = { name, child, events: [] };
  let buf = "";
  const logDir = path.join(PACKAGE_ROOT, ".lab", "ha-logs");
  fs.mkdirSync(logDir, { recursive: true });
  const logFile = path.join(logDir, `${name}.log`);
  fs.writeFileSync(logFile, "");
  child.stdout!.on("data", (d) => {
    fs.appendFileSync(logFile, d);
    buf += d.toString();
    let i: number;
    while ((i = buf.indexOf("\n")) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      try {
        const e = JSON.parse(line);
        e.seenAt = Date.now();
        p.events.push(e);
      } catch {
        /* not JSON */
      }
    }
  });
  child.stderr!.on("data", (d) => process.stderr.write(`[${name}] ${d}`));
  return p;
}

async function waitEvent(procs: Proc[], pred: (e: Record<string, any>) => boolean, timeoutMs: number, what: string): Promise<Record<string, any>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    for (const p of procs) {
      const e = p.events.find(pred);
      if (e) return e;
    }
    if (Date.now() > deadline) {
      const tail = procs.flatMap((p) => p.events.slice(-15).map((e) => `${p.name}: ${JSON.stringify(e)}`)).join("\n");
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}; recent events:\n${tail}`);
    }
    await sleep(50);
  }
}

async function stopProc(p: Proc | undefined, signal: NodeJS.Signals = "SIGTERM"): Promise<void> {
  if (!p || p.child.exitCode !== null || p.child.signalCode !== null) return;
  const exited = new Promise<void>((r) => p.child.once("exit", () => r()));
  p.child.kill(signal);
  const t = setTimeout(() => p.child.kill("SIGKILL"), 10_000);
  await exited;
  clearTimeout(t);
}

/** QEMU processes running the VM now, by host user (ground truth, read from /proc: a sample costs < 10 ms). */
function qemuCopies(vm: string, lab: LabState): string[] {
  const out: string[] = [];
  for (const pid of fs.readdirSync("/proc").filter((d) => /^\d+$/.test(d))) {
    let cmd: string;
    let uid: number;
    try {
      cmd = fs.readFileSync(`/proc/${pid}/cmdline`, "utf8");
      uid = fs.statSync(`/proc/${pid}`).uid;
    } catch {
      continue;
    }
    if (!cmd.includes("qemu-system") || !cmd.includes(`guest=${vm},`)) continue;
    out.push(uid === lab.hosts.a.uid ? "a" : uid === lab.hosts.b.uid ? "b" : `uid${uid}`);
  }
  return out;
}

describeLab("lab: HA agents and managers", () => {
  let lab: LabState;
  let etcd: EtcdCluster;
  const virsh = new ExecVirsh();
  const backend = new LibvirtBackend({ pool: "pvlab", virsh });
  let procs: Proc[] = [];
  let proxy: CuttableLink | undefined;
  let vm = "";

  beforeAll(async () => {
    lab = await ensureLab();
    etcd = await startEtcdCluster(1);
  }, 300_000);

  afterAll(async () => {
    await etcd?.stop();
  });

  afterEach(async () => {
    // Managers first (no recovery may start during the teardown), then agents, then the guests.
    for (const p of procs.filter((x) => x.name.startsWith("manager"))) await stopProc(p);
    for (const p of procs) await stopProc(p);
    procs = [];
    await proxy?.close();
    proxy = undefined;
    lab = await ensureLab(); // revives host a after failHost
    for (const h of [lab.hosts.a, lab.hosts.b]) await cleanupDomains(h.uri, vm, virsh);
    const repo = new SnapshotRepository(lab.repository);
    for (const s of await repo.list(vm).catch(() => [])) await repo.delete(vm, s.id).catch(() => undefined);
    for (const h of [lab.hosts.a, lab.hosts.b]) fs.rmSync(path.join(h.storageDir, `${vm}.console.log`), { force: true });
  }, 300_000);

  /** Define and start the protected guest on a, start agents on a and b and managers m1, m2; wait for its first HA snapshot. */
  async function setUp(label: string, opts: { agentAEtcd?: string } = {}): Promise<{ prefix: string; consoleA: string; consoleB: string }> {
    vm = `pvha-${label}-${runId()}`;
    const prefix = `/pvtest/${vm}/`;
    await backend.defineVm(
      {
        name: vm, memoryMiB: 128, vcpus: 1, disk: { sizeMiB: 32, pool: "pvlab" },
        boot: { kernel: lab.guest.kernel, initrd: lab.guest.initrd, cmdline: "quiet console=ttyS0 pv.mem=8 pv.rate=1" },
        protection: {
          version: 1, backend: "libvirt", primaryHost: lab.hosts.a.uri, recoveryHosts: [lab.hosts.b.uri], pool: "pvlab",
          policy: withPolicyDefaults({ repository: lab.repository, minIntervalSeconds: 3, maxIntervalSeconds: 6, keepLast: 3, liveSnapshot: "never" }),
        },
      },
      lab.hosts.a.uri,
    );
    await backend.startVm({ name: vm, host: lab.hosts.a.uri });
    const consoleA = path.join(lab.hosts.a.storageDir, `${vm}.console.log`);
    const consoleB = path.join(lab.hosts.b.storageDir, `${vm}.console.log`);
    await waitForCounter(consoleA, 2, 180_000);
    const common = ["--prefix", prefix, "--pool", "pvlab"];
    const agentArgs = ["--lease-ttl-ms", String(TTL_MS), "--fence-safety-ms", String(FENCE_SAFETY_MS), "--tick-ms", "500", "--cpu-sample-ms", "200", ...common];
    procs.push(startProc("agent-a", ["agent", "--host", lab.hosts.a.uri, "--etcd", opts.agentAEtcd ?? etcd.endpoints[0], ...agentArgs]));
    procs.push(startProc("agent-b", ["agent", "--host", lab.hosts.b.uri, "--etcd", etcd.endpoints[0], ...agentArgs]));
    const managerArgs = ["--etcd", etcd.endpoints[0], "--fencing-margin-ms", String(MARGIN_MS), "--lease-ttl-ms", "4000", "--tick-ms", "250", "--verify-ms", "1000", ...common];
    procs.push(startProc("manager-m1", ["manager", "--id", "m1", ...managerArgs]));
    await waitEvent(procs, (e) => e.event === "elected", 60_000, "a leader");
    procs.push(startProc("manager-m2", ["manager", "--id", "m2", ...managerArgs]));
    await waitEvent(procs, (e) => e.event === "claimed" && e.vm === vm && e.source === "agent/" + lab.hosts.a.uri, 60_000, "agent a to claim the VM");
    // A snapshot by the agent's loop (there is none before): recovery must use the newest.
    await waitEvent([procs[0]], (e) => e.event === "snapshot" && e.vm === vm, 300_000, "a snapshot by agent a");
    return { prefix, consoleA, consoleB };
  }

  const newestSnapshotOf = (agent: Proc) => agent.events.filter((e) => e.event === "snapshot" && e.vm === vm).pop()!;

  async function ownerOf(prefix: string): Promise<Record<string, any> | null> {
    const c = new EtcdCoordination({ endpoints: etcd.endpoints });
    try {
      const kv = await c.get(keys.owner(prefix, vm));
      return kv ? JSON.parse(kv.value) : null;
    } finally {
      await c.close();
    }
  }

  /** Wait for the VM's counter on b to pass `after`; returns when that line arrived (host clock). */
  async function counterContinuesOnB(consoleB: string, after: number, timeoutMs: number): Promise<{ at: number; first: number }> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const c = counters(consoleB);
      if (c.length && c[c.length - 1].n > after) return { at: Date.now(), first: c[0].n };
      if (Date.now() > deadline) throw new Error(`counter on b did not pass ${after} within ${timeoutMs} ms (b: ${JSON.stringify(c.slice(-3))})`);
      await sleep(100);
    }
  }

  test("host a SIGKILLed: with no command run, the VM counts again on b from its newest snapshot", async () => {
    const { prefix, consoleA, consoleB } = await setUp("kill");
    const [agentA] = procs;
    const countBefore = counters(consoleA).pop()!.n;
    const newest = newestSnapshotOf(agentA);
    await stopProc(agentA, "SIGKILL");
    const failedAt = (await failHost(lab.hosts.a)).getTime();
    const claimed = await waitEvent(procs, (e) => e.event === "claimed" && e.vm === vm && String(e.source).startsWith("manager/"), 120_000, "a manager's claim");
    const recovered = await waitEvent(procs, (e) => e.event === "recovered" && e.vm === vm, 180_000, "recovered");
    const counting = await counterContinuesOnB(consoleB, 0, 120_000);
    const wait = procs.flatMap((p) => p.events).find((e) => e.event === "wait" && e.vm === vm);
    const lostAt = wait ? wait.untilMs - MARGIN_MS : claimed.seenAt - MARGIN_MS;
    const split = {
      ttlMs: TTL_MS, marginMs: MARGIN_MS,
      detectionMs: lostAt - failedAt, fencingMarginMs: claimed.seenAt - lostAt, restoreMs: recovered.restoreMs,
      failureToCountingMs: counting.at - failedAt,
    };
    console.log(`HA power loss: ${JSON.stringify(split)}; counter before ${countBefore}, first on b ${counting.first}, snapshot ${claimed.snapshotId} (newest taken by a: ${newest.id})`);
    expect(claimed.snapshotId).toBe(newest.id);
    expect(claimed.to).toBe(lab.hosts.b.uri);
    // Warm: the counter continued from the snapshot (no reboot, which would restart it at 1).
    expect(counting.first).toBeGreaterThan(1);
    expect(counting.first).toBeLessThanOrEqual(countBefore + 1);
    expect(qemuCopies(vm, lab)).toEqual(["b"]);
    const owner = await ownerOf(prefix);
    expect(owner).toMatchObject({ host: lab.hosts.b.uri, state: "running" });
  }, 900_000);

  test("host a cut off from etcd while its guest runs: a fences, b resumes, never two copies, nothing restarts on a after the heal", async () => {
    proxy = await startTcpProxy(etcd.endpoints[0]);
    const { prefix, consoleB } = await setUp("cut", { agentAEtcd: proxy.url });
    expect(qemuCopies(vm, lab)).toEqual(["a"]);
    const samples: Array<{ at: number; copies: string[] }> = [];
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        samples.push({ at: Date.now(), copies: qemuCopies(vm, lab) });
        await sleep(100);
      }
    })();
    try {
      const cutAt = Date.now();
      proxy.cut();
      const fenced = await waitEvent(procs, (e) => e.event === "fenced" && e.vm === vm, 60_000, "a's agent to fence");
      const recovered = await waitEvent(procs, (e) => e.event === "recovered" && e.vm === vm, 180_000, "recovered on b");
      const counting = await counterContinuesOnB(consoleB, 0, 120_000);
      console.log(
        `HA etcd cut: fenced ${fenced.seenAt - cutAt} ms after the cut (the destroy took ${fenced.fenceMs} ms, done ${fenced.beforeDeadlineMs} ms before the lease could expire), ` +
          `recovered (verified) ${recovered.seenAt - cutAt} ms, counting on b ${counting.at - cutAt} ms; restore ${recovered.restoreMs} ms`,
      );
      proxy.heal();
      // The healed agent gets a new lease, sees b owns the VM, and starts nothing.
      await waitEvent(procs, (e) => e.event === "fenced-vm-recovered-elsewhere" && e.vm === vm, 60_000, "a to see the new owner");
      await sleep(3 * TTL_MS);
    } finally {
      sampling = false;
      await sampler;
    }
    const both = samples.filter((s) => s.copies.length > 1);
    console.log(`HA etcd cut: ${samples.length} samples at 100 ms, ${both.length} with two copies`);
    expect(samples.length).toBeGreaterThan(50);
    expect(both).toEqual([]);
    expect(samples.some((s) => s.copies.join() === "a")).toBe(true);
    expect(samples.some((s) => s.copies.join() === "b")).toBe(true);
    expect(samples[samples.length - 1].copies).toEqual(["b"]);
    expect((await backend.findVm(vm, [lab.hosts.a.uri]))?.state).not.toBe("running");
    expect(await ownerOf(prefix)).toMatchObject({ host: lab.hosts.b.uri, state: "running" });
  }, 900_000);

  test("the leading manager killed right after claiming a recovery: the other finishes it, exactly one copy", async () => {
    const { prefix, consoleB } = await setUp("leader");
    const [agentA] = procs;
    await stopProc(agentA, "SIGKILL");
    await failHost(lab.hosts.a);
    const leader = procs.find((p) => p.name === "manager-m1")!;
    const claim = await waitEvent([leader], (e) => e.event === "claimed" && e.vm === vm, 120_000, "m1's claim");
    leader.child.kill("SIGKILL");
    const killedAt = Date.now();
    console.log(`killed leader m1 ${killedAt - claim.seenAt} ms after its claim was logged`);
    const other = procs.find((p) => p.name === "manager-m2")!;
    await waitEvent([other], (e) => e.event === "elected", 60_000, "m2 elected");
    await waitEvent([other], (e) => (e.event === "recovered" || e.event === "confirmed") && e.vm === vm, 180_000, "m2 to finish the recovery");
    await counterContinuesOnB(consoleB, 0, 120_000);
    await sleep(2000);
    expect(qemuCopies(vm, lab)).toEqual(["b"]);
    expect(await ownerOf(prefix)).toMatchObject({ host: lab.hosts.b.uri, state: "running" });
    console.log(`HA leader loss: finished by m2 ${Date.now() - killedAt} ms after m1 died`);
  }, 900_000);
});
