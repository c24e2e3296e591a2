/**
 * Section 2 (the paper's table 3): from "host A is gone" to "the guest is doing work again" on
 * host B, by our recover() from the newest snapshot and by a cold boot (failover).
 *
 * The failure: SIGKILL of the guest's QEMU process on host A (the process this bench started,
 * by pid). Host A's libvirt daemon is left running because other people's tests share it; for
 * the guest the effect is the same as a dead host (its memory is gone, its disk is what was
 * last written), and recover() then finds it shut off on A and restores it on B.
 * "Doing work again" = the first PVCOUNT line on host B's console log after the failure; the
 * log is tailed with a 10 ms poll (a pty only exists once the domain does).
 * State lost: RPO = age of the newest snapshot at the failure; plus the guest's own counter
 * (guest-seconds of work lost = last counter seen on A - first counter on B + 1). A cold boot
 * loses every in-memory second since boot.
 */
import * as fs from "fs";
import * as path from "path";
import { recover } from "../ops/recover";
import { domainState } from "../hypervisor/libvirt/domains";
import { LogTail, nowMs } from "./console";
import { BenchContext, sleep } from "./context";
import { benchName, bootGuest, guestSpec, protectionFor, qemuPids, removeGuest, RunningGuest } from "./guest";

export interface RecoveryGrid {
  sizes: number[];
  loadPct: number;
  /** Seconds the guest keeps working between its newest snapshot and the failure. */
  workAfterSnapshotS: number;
  reps: number;
}

export async function runRecovery(ctx: BenchContext, grid: RecoveryGrid): Promise<void> {
  const { lab, backend, rec } = ctx;
  const A = lab.hosts.a;
  const B = lab.hosts.b;
  for (const mem of grid.sizes) for (let rep = 1; rep <= grid.reps; rep++) {
    const name = benchName("rc", mem);
    const coldName = benchName("fo", mem);
    const repo = ctx.newRepo(name);
    let g: RunningGuest | undefined;
    const tails: LogTail[] = [];
    const k = { section: "recovery", memMiB: mem, loadPct: grid.loadPct, rep };
    try {
      ctx.log(`recovery: ${mem} MiB: booting ${name} on A`);
      const spec = guestSpec(lab, name, { memMiB: mem, fillPct: grid.loadPct }, protectionFor(lab, repo));
      g = await bootGuest(backend, A.uri, spec, A.storageDir);
      await sleep(5000); // some work before the snapshot, so a cold boot visibly loses more than recover()
      const snap = await backend.takeSnapshot(g.ref, { includeMemory: true, repository: repo });
      await sleep(grid.workAfterSnapshotS * 1000);

      // --- failure of host A (for this guest)
      const logB = path.join(B.storageDir, `${name}.console.log`);
      fs.rmSync(logB, { force: true });
      const tailB = new LogTail(logB, 10, true);
      tails.push(tailB);
      const firstWorkB = tailB.next(/^PVCOUNT /, 600_000);
      firstWorkB.catch(() => undefined);
      const lastA = g.tap.counts[g.tap.counts.length - 1];
      const pids = qemuPids(name);
      if (!pids.length) throw new Error(`no QEMU process found for ${name}`);
      const tFail = nowMs();
      for (const pid of pids) process.kill(pid, "SIGKILL");
      g.tap.close();
      // libvirt notices the dead process within milliseconds; recover() refuses while it still says "running"
      for (let i = 0; i < 200 && (await domainState(backend.virsh, A.uri, name)) === "running"; i++) await sleep(25);

      // --- ours: recover() onto B
      const report = await recover(backend, name, { repository: repo, hosts: [A.uri, B.uri] });
      const work = await firstWorkB;
      const firstB = tailB.counts[0];
      rec.addAll({ ...k, variant: "recover" }, [
        ["time_to_work", (work.at - tFail) / 1000, "s"],
        ["recover_call", report.restoreSeconds, "s"],
        ["rpo_snapshot_age", (tFail - Date.parse(snap.createdAt)) / 1000, "s"],
        ["work_lost", lastA && firstB ? lastA.n - firstB.n + 1 : NaN, "guest-s"],
        ["state_bytes", snap.bytes, "B"],
      ]);
      ctx.log(`recovery: ${mem} MiB: recover() -> working on B after ${((work.at - tFail) / 1000).toFixed(1)} s (counter A ${lastA?.n}, B ${firstB?.n})`);
      await removeGuest(backend, { name, host: B.uri });

      // --- failover: cold boot of the same guest on B (its memory state is lost)
      const logCold = path.join(B.storageDir, `${coldName}.console.log`);
      fs.rmSync(logCold, { force: true });
      const tailCold = new LogTail(logCold, 10, true);
      tails.push(tailCold);
      const firstCold = tailCold.next(/^PVCOUNT /, 600_000);
      const readyCold = tailCold.next(/^PVREADY/, 600_000);
      firstCold.catch(() => undefined);
      readyCold.catch(() => undefined);
      const c0 = nowMs();
      await backend.defineVm(guestSpec(lab, coldName, { memMiB: mem, fillPct: grid.loadPct }), B.uri);
      await backend.startVm({ name: coldName, host: B.uri });
      const coldWork = await firstCold;
      const coldReady = await readyCold;
      rec.addAll({ ...k, variant: "cold-boot" }, [
        ["time_to_work", (coldWork.at - c0) / 1000, "s"],
        ["time_to_load_refilled", (coldReady.at - c0) / 1000, "s"],
        ["work_lost", lastA ? lastA.n : NaN, "guest-s"],
      ]);
      ctx.log(`recovery: ${mem} MiB: cold boot -> working on B after ${((coldWork.at - c0) / 1000).toFixed(1)} s`);
    } finally {
      for (const t of tails) t.close();
      g?.tap.close();
      await removeGuest(backend, { name: coldName, host: B.uri });
      await removeGuest(backend, { name, host: B.uri });
      await removeGuest(backend, { name, host: A.uri });
      ctx.dropRepo(repo);
    }
  }
}
