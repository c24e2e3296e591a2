/**
 * Section 4: how long the guest is stopped by each snapshot, seen from outside. The guest prints
 * "T <k>" every TICK_MS; a host-side reader of the console pty timestamps each line on arrival
 * (console.ts PtyTap); the longest gap between consecutive ticks during a snapshot is its pause.
 *
 * Checks made here rather than assumed:
 *  - jitter: the longest tick gap in equal windows without any snapshot (the noise floor);
 *  - the guest cannot time its own pause: across a `virsh suspend` of SUSPEND_MS, how much of
 *    it the guest's own clock saw (the PVCOUNT interval spanning it, minus one second), and over
 *    the snapshot run, host-elapsed minus guest-elapsed time against the sum of the pauses.
 */
import { nowMs } from "./console";
import { BenchContext, sleep } from "./context";
import { benchName, bootGuest, GuestLoad, guestSpec, removeGuest, RunningGuest, TICK_MS } from "./guest";

export interface PauseGrid {
  memMiB: number;
  fillPct: number;
  snapshots: number;
  baselineS: number;
  /** A second guest that rewrites its memory slowly (MiB/s), snapshotted with liveSnapshot "never" and "auto" in turn. */
  slowWriterRateMiBs: number;
  /** Snapshots of the slow writer, split evenly between the two settings. */
  slowWriterSnapshots: number;
}

const SUSPEND_MS = 2000;

/** Boot a pause-section guest on host a with its own scratch repository, run fn, remove both. */
async function withGuest(ctx: BenchContext, kind: string, load: GuestLoad, fn: (g: RunningGuest, repo: string) => Promise<void>): Promise<void> {
  const A = ctx.lab.hosts.a;
  const name = benchName(kind, load.memMiB);
  const repo = ctx.newRepo(name);
  let g: RunningGuest | undefined;
  try {
    ctx.log(`pause: booting ${name} (${load.memMiB} MiB, fill ${load.fillPct} %${load.rateMiBs ? `, rewritten at ${load.rateMiBs} MiB/s` : ""})`);
    g = await bootGuest(ctx.backend, A.uri, guestSpec(ctx.lab, name, load), A.storageDir);
    await sleep(3000);
    await fn(g, repo);
  } finally {
    g?.tap.close();
    if (g) await removeGuest(ctx.backend, g.ref);
    ctx.dropRepo(repo);
  }
}

/** Keep the scratch repository small: only the newest snapshot matters here. */
async function keepNewest(ctx: BenchContext, g: RunningGuest, repo: string): Promise<void> {
  for (const old of (await ctx.backend.listSnapshots(g.ref.name, repo)).slice(1)) await ctx.backend.deleteSnapshot(old, repo).catch(() => undefined);
}

export async function runPause(ctx: BenchContext, grid: PauseGrid): Promise<void> {
  const { lab, backend, rec } = ctx;
  const A = lab.hosts.a;
  const k = { section: "pause", memMiB: grid.memMiB, loadPct: grid.fillPct };
  await withGuest(ctx, "pa", { memMiB: grid.memMiB, fillPct: grid.fillPct }, async (g, repo) => {
    const name = g.ref.name;

    // jitter without snapshots
    const b0 = nowMs();
    await sleep(grid.baselineS * 1000);
    const windowMs = 2000;
    for (let t = b0, i = 1; t + windowMs <= b0 + grid.baselineS * 1000; t += windowMs, i++) {
      rec.add({ ...k, variant: "no-snapshot", rep: i, metric: "max_tick_gap", value: g.tap.longestTickGap(t, t + windowMs).gapMs, unit: "ms" });
    }

    // does the guest clock run while it is paused?
    const s0 = nowMs();
    await backend.virsh.run(A.uri, ["suspend", name]);
    await sleep(SUSPEND_MS);
    await backend.virsh.run(A.uri, ["resume", name]);
    const s1 = nowMs();
    await sleep(2500);
    const gapS = g.tap.longestTickGap(s0, s1 + 500);
    const before = g.tap.counts.filter((c) => c.at <= gapS.start).pop();
    const after = g.tap.counts.find((c) => c.at >= gapS.end);
    rec.addAll({ ...k, variant: "suspend-check" }, [
      ["suspend_held", s1 - s0, "ms"],
      ["host_seen_gap", gapS.gapMs, "ms"],
    ]);
    if (before && after) {
      const hostMs = after.at - before.at;
      const guestMs = (after.n - before.n) * 1000;
      rec.add({ ...k, variant: "suspend-check", metric: "guest_clock_missed", value: hostMs - guestMs, unit: "ms", note: "host time across the suspend that the guest's clock did not count" });
    }

    // the snapshots
    const runStart = nowMs();
    let sumGap = 0;
    for (let i = 1; i <= grid.snapshots; i++) {
      const a = nowMs();
      const snap = await backend.takeSnapshot(g.ref, { includeMemory: true, repository: repo });
      const b = nowMs();
      const gap = g.tap.longestTickGap(a, b);
      sumGap += gap.gapMs - TICK_MS;
      rec.addAll({ ...k, variant: "ours", rep: i }, [
        ["guest_pause", gap.gapMs, "ms"],
        ["virsh_snapshot_call", snap.pauseMs ?? NaN, "ms"],
        ["take", (b - a) / 1000, "s"],
      ]);
      await keepNewest(ctx, g, repo);
      await sleep(1000);
    }
    const runEnd = nowMs();
    const cs = g.tap.countsBetween(runStart, runEnd);
    if (cs.length >= 2) {
      const hostMs = cs[cs.length - 1].at - cs[0].at;
      const guestMs = (cs[cs.length - 1].n - cs[0].n) * 1000;
      rec.addAll({ ...k, variant: "clock-check" }, [
        ["host_minus_guest_elapsed", hostMs - guestMs, "ms"],
        ["sum_of_pauses", sumGap, "ms"],
      ]);
    }
  });
  if (grid.slowWriterSnapshots > 0) await runSlowWriter(ctx, grid);
}

/**
 * liveSnapshot "auto" against "never" on a guest that dirties memory slowly: auto measures the
 * dirty rate and takes the memory live, so the guest should pause only for the switch-over.
 */
async function runSlowWriter(ctx: BenchContext, grid: PauseGrid): Promise<void> {
  const k = { section: "pause", memMiB: grid.memMiB, loadPct: grid.fillPct };
  await withGuest(ctx, "pw", { memMiB: grid.memMiB, fillPct: grid.fillPct, rateMiBs: grid.slowWriterRateMiBs }, async (g, repo) => {
    for (let i = 1; i <= grid.slowWriterSnapshots; i++) {
      const live = i % 2 === 0 ? "auto" : "never";
      const a = nowMs();
      const snap = await ctx.backend.takeSnapshot(g.ref, { includeMemory: true, repository: repo, live });
      const b = nowMs();
      ctx.rec.addAll({ ...k, variant: `slow-writer-${live}`, rep: Math.ceil(i / 2), note: `rewrite ${grid.slowWriterRateMiBs} MiB/s` }, [
        ["guest_pause", g.tap.longestTickGap(a, b).gapMs, "ms"],
        ["taken_live", snap.live ? 1 : 0, "bool"],
        ["take", (b - a) / 1000, "s"],
      ]);
      await keepNewest(ctx, g, repo);
      await sleep(1000);
    }
  });
}
