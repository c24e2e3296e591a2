/** The three grids: smoke (the lab test), quick (default, < 15 min on 2 cores), full (--full). */
import type { TakeRestoreGrid } from "./takeRestore";
import type { RecoveryGrid } from "./recovery";
import { adaptiveMode, fixedMode, OverheadGrid } from "./overhead";
import type { PauseGrid } from "./pause";

export type Mode = "smoke" | "quick" | "full";

/** Overhead: each protected mode runs between two unprotected ("none") windows on the same guest. */
export interface BenchConfig {
  mode: Mode;
  diskTestMiB: number;
  takeRestore: TakeRestoreGrid;
  recovery: RecoveryGrid;
  overhead: OverheadGrid;
  pause: PauseGrid;
}

export const CONFIGS: Record<Mode, BenchConfig> = {
  smoke: {
    mode: "smoke",
    diskTestMiB: 128,
    takeRestore: { sizes: [256], loads: [0, 90], reps: 1 },
    recovery: { sizes: [256], loadPct: 50, workAfterSnapshotS: 3, reps: 1 },
    overhead: {
      workloads: [{ label: "busy", memMiB: 256, fillPct: 50, rateMiBs: 0 }],
      modes: [fixedMode(5), adaptiveMode(5, 20)],
      windowS: 15,
      rpoSamples: 100,
      hugePageShare: 0.8,
      hugePageWaitS: 30,
    },
    pause: { memMiB: 256, fillPct: 50, snapshots: 3, baselineS: 4, slowWriterRateMiBs: 4, slowWriterSnapshots: 2 },
  },
  quick: {
    mode: "quick",
    diskTestMiB: 256,
    takeRestore: { sizes: [256, 512], loads: [0, 50, 90], reps: 2 },
    recovery: { sizes: [256, 512], loadPct: 50, workAfterSnapshotS: 5, reps: 2 },
    overhead: {
      workloads: [{ label: "busy", memMiB: 256, fillPct: 50, rateMiBs: 0 }],
      modes: [fixedMode(5), fixedMode(15), adaptiveMode(5, 30)],
      windowS: 40,
      rpoSamples: 200,
      hugePageShare: 0.8,
      hugePageWaitS: 240,
    },
    pause: { memMiB: 256, fillPct: 50, snapshots: 12, baselineS: 10, slowWriterRateMiBs: 4, slowWriterSnapshots: 8 },
  },
  full: {
    mode: "full",
    diskTestMiB: 1024,
    takeRestore: { sizes: [256, 512, 1024, 2048], loads: [0, 50, 90], reps: 5 },
    recovery: { sizes: [256, 512, 1024, 2048], loadPct: 50, workAfterSnapshotS: 10, reps: 3 },
    overhead: {
      workloads: [
        { label: "busy", memMiB: 512, fillPct: 50, rateMiBs: 0 },
        { label: "light", memMiB: 512, fillPct: 50, rateMiBs: 16 },
      ],
      modes: [fixedMode(5), fixedMode(15), fixedMode(60), adaptiveMode(5, 60)],
      windowS: 180,
      rpoSamples: 500,
      hugePageShare: 0.8,
      hugePageWaitS: 600,
    },
    pause: { memMiB: 512, fillPct: 50, snapshots: 40, baselineS: 30, slowWriterRateMiBs: 4, slowWriterSnapshots: 20 },
  },
};
