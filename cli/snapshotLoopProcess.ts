/**
 * The agent's snapshot loop as a child process (see AgentOptions.startSnapshotLoop for why: the
 * repository commit hashes hundreds of MB, which stalled the agent's lease renewals when it ran
 * in the agent's own event loop). The parent starts it with the VMs it owns; it logs one JSON
 * line per scheduler event on stdout and exits when its stdin closes (the agent died or stopped
 * it), so no orphan keeps snapshotting after its agent is gone.
 */
import { spawn } from "child_process";
import * as readline from "readline";
import type { SnapshotLoop } from "../ops/agent";
import type { SchedulerEvent } from "../ops/scheduler";
import { Scheduler } from "../ops/scheduler";
import { createBackend } from "../hypervisor/createBackend";

export interface SnapshotLoopSettings {
  host: string;
  vms: string[];
  pool?: string;
  concurrency: number;
  cpuSampleMs?: number;
}

export function spawnSnapshotLoop(settings: SnapshotLoopSettings, onEvent: (e: SchedulerEvent) => void): SnapshotLoop {
  const child = spawn(process.execPath, [__filename, JSON.stringify(settings)], { stdio: ["pipe", "pipe", "inherit"] });
  readline.createInterface({ input: child.stdout! }).on("line", (line) => {
    try {
      onEvent(JSON.parse(line) as SchedulerEvent);
    } catch {
      /* not an event line */
    }
  });
  const done = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  return {
    stop: (hard) => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      if (hard) child.kill("SIGKILL");
      else child.stdin!.end();
    },
    done,
  };
}

async function child(settings: SnapshotLoopSettings): Promise<void> {
  const scheduler = new Scheduler({
    backend: createBackend({ kind: "libvirt", pool: settings.pool }),
    hosts: [settings.host],
    vmNames: settings.vms,
    concurrency: settings.concurrency,
    cpuSampleMs: settings.cpuSampleMs,
    discoverEveryMs: 5000,
    // The parent reads exactly these lines (spawnSnapshotLoop): one JSON event per line on stdout.
    log: (e) => void process.stdout.write(JSON.stringify(e) + "\n"),
  });
  process.stdin.on("end", () => scheduler.stop());
  process.stdin.on("close", () => scheduler.stop());
  process.stdin.resume();
  await scheduler.run();
  process.exit(0);
}

if (require.main === module) void child(JSON.parse(process.argv[2]) as SnapshotLoopSettings);
