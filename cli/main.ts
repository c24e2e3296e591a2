#!/usr/bin/env node
/**
 * protected-vm CLI. Subcommands reuse the same modules as the component and the scheduler.
 *   stack <op>   run a program module as a Pulumi stack (local file backend)
 *   scheduler    snapshot every protected VM on its policy, prune, report RPO
 *   recover VM   resume a VM on a recovery host from its newest complete snapshot
 *   agent        per-host HA agent (host lease, self-fencing, snapshot loop); see agentCommand.ts
 *   manager      HA manager (leader-elected; recovers VMs of hosts whose lease expired)
 * Exit codes: 0 ok, 1 operation failed, 2 bad usage or input, 3 refused (e.g. split brain).
 */
import { parseArgs, UsageError, boolFlag } from "./args";
import { stackCommand } from "./stackCommand";
import { schedulerCommand } from "./schedulerCommand";
import { recoverCommand } from "./recoverCommand";
import { drillCommand } from "./drillCommand";
import { agentCommand } from "./agentCommand";
import { managerCommand } from "./managerCommand";
import { ParsedArgs, flag, flagList } from "./args";

type Command = (args: ReturnType<typeof parseArgs>) => Promise<unknown>;

const num = (args: ParsedArgs, name: string): number | undefined => {
  const v = flag(args, name);
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) throw new UsageError(`--${name} must be a non-negative number, got ${JSON.stringify(v)}`);
  return n;
};

/** Long-running HA processes: they return an exit code, which becomes the process's. */
class ExitWith {
  constructor(readonly code: number) {}
}

// Minimal wiring of the HA commands (typed functions in agentCommand.ts / managerCommand.ts).
const agent: Command = async (args) =>
  new ExitWith(
    await agentCommand({
      host: flag(args, "host") ?? "", etcd: flagList(args, "etcd"), pool: flag(args, "pool"), leaseTtlMs: num(args, "lease-ttl-ms"),
      fenceSafetyMs: num(args, "fence-safety-ms"), tickMs: num(args, "tick-ms"), capacityMiB: num(args, "capacity-mib"),
      snapshotConcurrency: num(args, "snapshot-concurrency"), cpuSampleMs: num(args, "cpu-sample-ms"), metricsPort: num(args, "metrics-port"), prefix: flag(args, "prefix"),
    }),
  );
const manager: Command = async (args) =>
  new ExitWith(
    await managerCommand({
      id: flag(args, "id"), etcd: flagList(args, "etcd"), pool: flag(args, "pool"), fencingMarginMs: num(args, "fencing-margin-ms"),
      leaseTtlMs: num(args, "lease-ttl-ms"), tickMs: num(args, "tick-ms"), verifyMs: num(args, "verify-ms"), metricsPort: num(args, "metrics-port"), prefix: flag(args, "prefix"),
    }),
  );

const commands: Record<string, Command> = {
  stack: stackCommand,
  scheduler: schedulerCommand,
  recover: recoverCommand,
  drill: drillCommand,
  agent,
  manager,
};

export async function main(argv: string[]): Promise<number> {
  const args = parseArgs(argv, ["json", "force", "once", "quiet", "diff", "keep"]);
  const name = args.positionals[0];
  const json = boolFlag(args, "json");
  try {
    const command = name ? commands[name] : undefined;
    if (!command) throw new UsageError(`usage: protected-vm <${Object.keys(commands).join("|")}> ...`);
    const result = await command(args);
    if (result instanceof ExitWith) return result.code;
    if (result !== undefined) process.stdout.write((json ? JSON.stringify(result) : JSON.stringify(result, null, 2)) + "\n");
    return 0;
  } catch (e) {
    const err = e as Error & { exitCode?: number };
    const code = err instanceof UsageError ? err.exitCode : (err.exitCode ?? 1);
    if (json) process.stdout.write(JSON.stringify({ ok: false, error: err.message }) + "\n");
    process.stderr.write(`protected-vm ${name ?? ""}: ${err.message}\n`);
    return code;
  }
}

if (require.main === module) {
  main(process.argv.slice(2)).then((code) => process.exit(code));
}
