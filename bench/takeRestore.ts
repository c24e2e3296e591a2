/**
 * Section 1 (the paper's figures 4 and 5): take and restore time vs guest memory and load.
 * Per rep on one running guest on host A:
 *   ours:  backend.takeSnapshot (pause + write into the chunked repository + fold the overlay),
 *          backend.restoreSnapshot on host B (rebuild files from the repository + virsh restore);
 *   raw:   `virsh save` on A (guest stopped for the whole save), `virsh restore` of that file on A;
 *   floor: state bytes / measured sequential disk bandwidth (write for take, read for restore).
 * Our take time is the wall time until the snapshot is committed and verified in the repository.
 */
import * as fs from "fs";
import * as path from "path";
import { nowMs } from "./console";
import { BenchContext, sleep } from "./context";
import { bootGuest, benchName, guestSpec, removeGuest, RunningGuest } from "./guest";
import { PtyTap } from "./console";

export interface TakeRestoreGrid {
  sizes: number[];
  loads: number[];
  reps: number;
}

export async function runTakeRestore(ctx: BenchContext, grid: TakeRestoreGrid): Promise<void> {
  const { lab, backend, rec } = ctx;
  const A = lab.hosts.a;
  const B = lab.hosts.b;
  for (const mem of grid.sizes) {
    for (const load of grid.loads) {
      const name = benchName("tr", mem, load);
      const repo = ctx.newRepo(name);
      let g: RunningGuest | undefined;
      const restoredOnB = { name, host: B.uri };
      try {
        ctx.log(`take-restore: ${mem} MiB, load ${load} %: booting ${name}`);
        const t0 = Date.now();
        g = await bootGuest(backend, A.uri, guestSpec(lab, name, { memMiB: mem, fillPct: load }), A.storageDir);
        rec.add({ section: "take-restore", variant: "guest", memMiB: mem, loadPct: load, metric: "boot_to_ready", value: (Date.now() - t0) / 1000, unit: "s" });
        rec.add({ section: "take-restore", variant: "guest", memMiB: mem, loadPct: load, metric: "filled", value: g.filledMiB, unit: "MiB" });
        await sleep(2000);
        for (let rep = 1; rep <= grid.reps; rep++) {
          const k = { section: "take-restore", memMiB: mem, loadPct: load, rep };
          // ours: take
          const a = nowMs();
          const snap = await backend.takeSnapshot(g.ref, { includeMemory: true, repository: repo });
          const b = nowMs();
          const gap = g.tap.longestTickGap(a, b);
          rec.addAll({ ...k, variant: "ours" }, [
            ["take", (b - a) / 1000, "s"],
            ["state_bytes", snap.bytes, "B"],
            ["stored_bytes", snap.storedBytes, "B"],
            ["virsh_snapshot_call", snap.pauseMs ?? NaN, "ms"],
            ["guest_pause", gap.gapMs, "ms"],
          ]);
          rec.addAll({ ...k, variant: "disk-floor" }, [
            ["take", snap.bytes / 1e6 / ctx.machine.diskWriteMBs, "s"],
            ["restore", snap.bytes / 1e6 / ctx.machine.diskReadMBs, "s"],
          ]);
          // ours: restore on B (same name: B is another daemon), then remove it there
          const r0 = nowMs();
          await backend.restoreSnapshot(snap, B.uri, { repository: repo });
          rec.add({ ...k, variant: "ours", metric: "restore", value: (nowMs() - r0) / 1000, unit: "s" });
          await removeGuest(backend, restoredOnB);
          await sleep(1000);
          // raw libvirt: save + restore of the same guest on A
          const saveFile = path.join(A.storageDir, `${name}.rawsave-${rep}`);
          try {
            const s0 = nowMs();
            await backend.virsh.run(A.uri, ["save", name, saveFile], { timeoutMs: 3_600_000 });
            const s1 = nowMs();
            const rawBytes = fs.statSync(saveFile).size;
            g.tap.close();
            const s2 = nowMs();
            await backend.virsh.run(A.uri, ["restore", saveFile], { timeoutMs: 3_600_000 });
            const s3 = nowMs();
            g.tap = await PtyTap.open(backend.virsh, A.uri, name); // a new QEMU, a new pty
            rec.addAll({ ...k, variant: "raw-libvirt" }, [
              ["take", (s1 - s0) / 1000, "s"],
              ["restore", (s3 - s2) / 1000, "s"],
              ["state_bytes", rawBytes, "B"],
            ]);
          } finally {
            fs.rmSync(saveFile, { force: true });
          }
          await sleep(1000);
        }
      } finally {
        g?.tap.close();
        await removeGuest(backend, restoredOnB);
        if (g) await removeGuest(backend, g.ref);
        ctx.dropRepo(repo);
      }
    }
  }
}
