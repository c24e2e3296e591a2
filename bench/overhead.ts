/**
 * Section 3: overhead vs protection. One guest runs a workload that reports its progress
 * (PVCOUNT work = pages rewritten); the same guest is run for a fixed window under each mode:
 * no snapshots, fixed intervals, and the load-adaptive policy. Snapshots are taken by the
 * project's own Scheduler.snapshotVm (take -> retention -> CPU sample -> next interval from
 * core/interval nextIntervalSeconds), driven here for this one VM only (the full
 * Scheduler.run() would discover and snapshot everyone's protected VMs on the shared lab).
 *
 * Throughput = work done / host wall time, both from host-timestamped PVCOUNT lines (the
 * guest's own clock stops while it is paused, so guest-timed rates would hide the pauses).
 * Achieved RPO = age of the newest committed snapshot at failure moments drawn uniformly at
 * random (seeded) over the window after the first snapshot was committed.
 */
import { Scheduler, SchedulerEvent } from "../ops/scheduler";
import type { SnapshotPolicy } from "../core/policy";
import { nowMs } from "./console";
import { BenchContext, sleep, TakeEvent, timedBackend } from "./context";
import { anonHugeMiB, benchName, bootGuest, guestSpec, protectionFor, qemuPids, removeGuest, RunningGuest, waitHostHugePages } from "./guest";
import { percentile, rng } from "./stats";

export interface OverheadMode {
  /** none | fixed-<n>s | adaptive-<min>-<max>s */
  label: string;
  policy?: Partial<SnapshotPolicy>;
}

export interface OverheadWorkload {
  label: string;
  memMiB: number;
  fillPct: number;
  rateMiBs: number;
}

export interface OverheadGrid {
  workloads: OverheadWorkload[];
  modes: OverheadMode[];
  windowS: number;
  rpoSamples: number;
  /** Before measuring, wait until this share of the guest's RAM is in host huge pages, at most hugePageWaitS. */
  hugePageShare: number;
  hugePageWaitS: number;
}

export function fixedMode(s: number): OverheadMode {
  return { label: `fixed-${s}s`, policy: { loadAdaptive: false, minIntervalSeconds: s, maxIntervalSeconds: s } };
}
export function adaptiveMode(min: number, max: number): OverheadMode {
  return { label: `adaptive-${min}-${max}s`, policy: { loadAdaptive: true, minIntervalSeconds: min, maxIntervalSeconds: max } };
}

export async function runOverhead(ctx: BenchContext, grid: OverheadGrid, onTake: (e: TakeEvent, g: RunningGuest, section: string) => void): Promise<void> {
  const { lab, backend, rec } = ctx;
  const A = lab.hosts.a;
  for (const wl of grid.workloads) {
    const name = benchName("ov", wl.label, wl.memMiB);
    const repo = ctx.newRepo(name);
    let g: RunningGuest | undefined;
    try {
      ctx.log(`overhead: workload ${wl.label} (${wl.memMiB} MiB, fill ${wl.fillPct} %, rate ${wl.rateMiBs || "max"} MiB/s): booting ${name}`);
      g = await bootGuest(backend, A.uri, guestSpec(lab, name, { memMiB: wl.memMiB, fillPct: wl.fillPct, rateMiBs: wl.rateMiBs }), A.storageDir);
      const guest = g;
      await sleep(3000);
      // Same guest speed in every window: wait for the host to back its RAM with huge pages first.
      const warm = await waitHostHugePages(name, wl.memMiB, grid.hugePageShare, grid.hugePageWaitS);
      rec.addAll({ section: "overhead", variant: "warmup", memMiB: wl.memMiB, loadPct: wl.fillPct, note: wl.label }, [
        ["wait_for_host_hugepages", warm.waitedS, "s"],
        ["host_anon_hugepages", warm.hugeMiB, "MiB"],
      ]);
      ctx.log(`overhead: ${wl.label}: host huge pages ${warm.hugeMiB.toFixed(0)} MiB after ${warm.waitedS.toFixed(0)} s`);
      let seed = 1;
      // The guest's speed under TCG on this shared machine drifts (and sometimes jumps) on its own, so
      // every protected mode runs between two unprotected windows and is compared with their mean.
      const protectedModes = grid.modes.filter((m) => m.policy);
      const sequence: OverheadMode[] = [];
      for (const m of protectedModes) sequence.push({ label: "none" }, m);
      sequence.push({ label: "none" });
      const thrOf: number[] = [];
      let noneRep = 0;
      for (const mode of sequence) {
        const isNone = !mode.policy;
        if (isNone) noneRep++;
        const k = { section: "overhead", variant: mode.label, memMiB: wl.memMiB, loadPct: wl.fillPct, note: wl.label };
        const takes: TakeEvent[] = [];
        const events: SchedulerEvent[] = [];
        const be = timedBackend(backend, (e) => {
          takes.push(e);
          onTake(e, guest, "overhead");
        });
        const sched = new Scheduler({ backend: be, hosts: [], log: (e) => events.push(e), cpuSampleMs: 1000 });
        const tracked = mode.policy
          ? { name, host: A.uri, protection: protectionFor(lab, repo, { keepLast: 2, ...mode.policy }), dueAt: Date.now() }
          : undefined;
        const t0 = nowMs();
        while (nowMs() < t0 + grid.windowS * 1000) {
          if (tracked && tracked.dueAt <= Date.now()) await sched.snapshotVm(tracked);
          else await sleep(50);
        }
        const tEnd = nowMs(); // an in-flight snapshot is finished (and counted) before the window closes
        const cs = guest.tap.countsBetween(t0, tEnd);
        if (cs.length < 2) throw new Error(`overhead ${mode.label}: fewer than 2 PVCOUNT lines in the window`);
        const c1 = cs[0];
        const c2 = cs[cs.length - 1];
        const pagesPerS = (c2.work - c1.work) / ((c2.at - c1.at) / 1000);
        thrOf.push(pagesPerS / 1000);
        const qpid = qemuPids(name)[0];
        rec.addAll({ ...k, rep: isNone ? noneRep : 1 }, [
          ["host_anon_hugepages", qpid ? anonHugeMiB(qpid) : NaN, "MiB"],
          ["throughput", pagesPerS / 1000, "kpages/s"],
          ["window", (tEnd - t0) / 1000, "s"],
          ["snapshots", takes.length, "count"],
        ]);
        // per-second rates (host-timed) show the noise of the shared machine
        for (let i = 1; i < cs.length; i++) {
          const r = (cs[i].work - cs[i - 1].work) / 1000 / ((cs[i].at - cs[i - 1].at) / 1000);
          rec.add({ ...k, rep: isNone ? noneRep : 1, metric: "throughput_1s", value: r, unit: "kpages/s" });
        }
        for (const e of events) {
          if (e.event === "rpo" && typeof e.nextIntervalSeconds === "number") {
            rec.add({ ...k, metric: "chosen_interval", value: e.nextIntervalSeconds, unit: "s" });
            if (typeof e.cpuPercent === "number") rec.add({ ...k, metric: "cpu_at_decision", value: e.cpuPercent, unit: "%" });
          }
        }
        if (takes.length) {
          const firstCommit = takes[0].returnedAt;
          const rnd = rng(seed++);
          const ages: number[] = [];
          for (let i = 0; i < grid.rpoSamples; i++) {
            const m = firstCommit + rnd() * (tEnd - firstCommit);
            const newest = takes.filter((t) => t.returnedAt <= m).sort((a, b) => b.returnedAt - a.returnedAt)[0];
            ages.push((m - Date.parse(newest.record.createdAt)) / 1000);
          }
          ages.forEach((a, i) => rec.add({ ...k, rep: i + 1, metric: "rpo_sample", value: a, unit: "s" }));
          rec.addAll({ ...k, rep: 1 }, [
            ["rpo_mean", ages.reduce((a, b) => a + b, 0) / ages.length, "s"],
            ["rpo_p99", percentile(ages, 99), "s"],
          ]);
        }
        ctx.log(`overhead: ${wl.label} ${mode.label}: ${(pagesPerS / 1000).toFixed(1)} kpages/s, ${takes.length} snapshots`);
        await sleep(2000);
      }
      // baseline of each protected mode: the unprotected windows just before and after it
      sequence.forEach((m, i) => {
        if (!m.policy) return;
        rec.add({ section: "overhead", variant: m.label, memMiB: wl.memMiB, loadPct: wl.fillPct, note: wl.label, rep: 1, metric: "baseline_throughput", value: (thrOf[i - 1] + thrOf[i + 1]) / 2, unit: "kpages/s" });
      });
    } finally {
      g?.tap.close();
      if (g) await removeGuest(backend, g.ref);
      ctx.dropRepo(repo);
    }
  }
}
