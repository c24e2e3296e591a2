/**
 * `protected-vm scheduler --hosts A,B [--vm NAME] [--status-file F] [--max-snapshots N]`: the
 * companion scheduler. One JSON line per event on stdout (pino, cli/log.ts); runs until SIGTERM or
 * SIGINT (or --max-snapshots), then exits 0.
 */
import { Command } from "commander";
import { Scheduler } from "../ops/scheduler";
import { EXIT } from "../core/errors";
import { addBackendOptions, backendFrom, BackendOptions, hostsFrom } from "./backendOptions";
import { schedulerSink } from "./log";
import { CliContext, collectList, count, positiveNumber, runAction } from "./program";

interface SchedulerCliOptions extends BackendOptions {
  vm?: string[];
  statusFile?: string;
  maxSnapshots?: number;
  cpuSampleMs: number;
  discoverEveryMs: number;
}

export function register(program: Command, ctx: CliContext): void {
  const cmd = program
    .command("scheduler")
    .summary("snapshot every protected VM on its policy, prune, report RPO")
    .description(
      "Find every protected VM on the hosts and, one VM at a time, read its CPU usage, pick the interval,\n" +
        "wait, snapshot (memory + disk) and apply retention. One JSON line per event on stdout.",
    );
  addBackendOptions(cmd, "hosts to watch (comma-separated, repeatable); a protected VM is found on whichever runs it")
    .option("--vm <name,...>", "only these VMs (default: every protected VM on the hosts)", collectList)
    .option("--status-file <file>", "keep each VM's newest snapshot and current RPO in this JSON file, for monitoring")
    .option("--max-snapshots <n>", "stop after this many snapshots in total (tests, one-off runs)", count)
    .option("--cpu-sample-ms <ms>", "CPU usage sample length", positiveNumber, 1000)
    .option("--discover-every-ms <ms>", "how often to look for new or moved VMs", positiveNumber, 15000)
    .action(
      runAction(ctx, "scheduler", async (opts: SchedulerCliOptions) => {
        const scheduler = new Scheduler({
          backend: backendFrom(ctx, opts),
          hosts: hostsFrom(opts),
          log: schedulerSink(ctx.stdout),
          statusFile: opts.statusFile,
          maxSnapshots: opts.maxSnapshots,
          cpuSampleMs: opts.cpuSampleMs,
          discoverEveryMs: opts.discoverEveryMs,
          vmNames: opts.vm?.length ? opts.vm : undefined,
        });
        const stop = () => scheduler.stop();
        process.once("SIGTERM", stop);
        process.once("SIGINT", stop);
        try {
          await scheduler.run();
        } finally {
          process.removeListener("SIGTERM", stop);
          process.removeListener("SIGINT", stop);
        }
        return { code: EXIT.ok };
      }),
    );
}
