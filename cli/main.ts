#!/usr/bin/env node
/**
 * protected-vm CLI. Subcommands reuse the same modules as the component and the scheduler.
 *   stack <op>   run a program module as a Pulumi stack (local file backend)
 *   scheduler    snapshot every protected VM on its policy, prune, report RPO
 *   recover VM   resume a VM on a recovery host from its newest complete snapshot
 * Exit codes: 0 ok, 1 operation failed, 2 bad usage or input, 3 refused (e.g. split brain).
 */
import { parseArgs, UsageError, boolFlag } from "./args";
import { stackCommand } from "./stackCommand";
import { schedulerCommand } from "./schedulerCommand";
import { recoverCommand } from "./recoverCommand";
import { drillCommand } from "./drillCommand";

type Command = (args: ReturnType<typeof parseArgs>) => Promise<unknown>;

const commands: Record<string, Command> = {
  stack: stackCommand,
  scheduler: schedulerCommand,
  recover: recoverCommand,
  drill: drillCommand,
};

export async function main(argv: string[]): Promise<number> {
  const args = parseArgs(argv, ["json", "force", "once", "quiet", "diff", "keep"]);
  const name = args.positionals[0];
  const json = boolFlag(args, "json");
  try {
    const command = name ? commands[name] : undefined;
    if (!command) throw new UsageError(`usage: protected-vm <${Object.keys(commands).join("|")}> ...`);
    const result = await command(args);
    if (result !== undefined) process.stdout.write((json ? JSON.stringify(result) : JSON.stringify(result, null, 2)) + "\n");
    return 0;
  } catch (e) {
    const err = e as Error & { exitCode?: number };
    const code = err instanceof UsageError ? err.exitCode : (err.exitCode ?? 1);
    // An error may carry what was done before it failed (recover: every attempt), for --json readers.
    const report = (err as { report?: unknown }).report;
    if (json) process.stdout.write(JSON.stringify({ ok: false, error: err.message, ...(report ? { report } : {}) }) + "\n");
    process.stderr.write(`protected-vm ${name ?? ""}: ${err.message}\n`);
    return code;
  }
}

if (require.main === module) {
  main(process.argv.slice(2)).then((code) => process.exit(code));
}
