/** `protected-vm scheduler --hosts A,B [--vm NAME] [--status-file F] [--max-snapshots N]`: the companion scheduler. */
import { Scheduler } from "../ops/scheduler";
import { ParsedArgs, flag, flagList } from "./args";
import { backendFromArgs, hostsFromArgs } from "./backendArgs";

export async function schedulerCommand(args: ParsedArgs): Promise<undefined> {
  const max = flag(args, "max-snapshots");
  const scheduler = new Scheduler({
    backend: backendFromArgs(args),
    hosts: hostsFromArgs(args),
    statusFile: flag(args, "status-file"),
    maxSnapshots: max ? Number(max) : undefined,
    cpuSampleMs: Number(flag(args, "cpu-sample-ms") ?? 1000),
    discoverEveryMs: Number(flag(args, "discover-every-ms") ?? 15000),
    vmNames: flagList(args, "vm").length ? flagList(args, "vm") : undefined,
  });
  const stop = () => scheduler.stop();
  process.once("SIGTERM", stop);
  process.once("SIGINT", stop);
  await scheduler.run();
  return undefined;
}
