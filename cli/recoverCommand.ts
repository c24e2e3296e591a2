/**
 * `protected-vm recover VM --hosts PRIMARY,RECOVERY... --repository DIR [--to HOST]
 *  [--snapshot ID] [--force] [--json]`. Exit 0 recovered (or already recovered), 3 refused
 * (split brain, no snapshot, no healthy host), 1 failed.
 */
import { recover, RecoveryReport } from "../ops/recover";
import { ParsedArgs, UsageError, boolFlag, flag } from "./args";
import { backendFromArgs, hostsFromArgs } from "./backendArgs";

export async function recoverCommand(args: ParsedArgs): Promise<RecoveryReport> {
  const vm = args.positionals[1];
  if (!vm) throw new UsageError("usage: protected-vm recover VM --hosts PRIMARY,RECOVERY... --repository DIR [--to HOST] [--snapshot ID] [--force]");
  const repository = flag(args, "repository");
  if (!repository) throw new UsageError("--repository is required (the policy's snapshot repository)");
  const json = boolFlag(args, "json");
  return recover(backendFromArgs(args), vm, {
    repository,
    hosts: hostsFromArgs(args),
    to: flag(args, "to"),
    snapshotId: flag(args, "snapshot"),
    force: boolFlag(args, "force"),
    onEvent: (e) => process.stderr.write(`${json ? JSON.stringify(e) : `[${e.step}] ${e.detail}`}\n`),
  });
}
