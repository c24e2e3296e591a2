#!/usr/bin/env node
/**
 * protected-vm CLI (commander). Every command and subcommand has --help.
 *
 *   stack <op>   run a program module as a Pulumi stack (local file backend)
 *   scheduler    snapshot every protected VM on its policy, prune, report RPO
 *   recover VM   resume a VM on a recovery host from its newest complete snapshot
 *   drill VM     restore a copy under another name, check it, remove it (--cleanup: sweep leftovers)
 *   repository check   check (and --repair) a snapshot repository
 *   agent        per-host HA agent (host lease, self-fencing, snapshot loop)
 *   manager      HA manager (leader-elected; recovers the VMs of hosts whose lease expired)
 *
 * Adding a command (e.g. `repository check`, `agent`, `manager`):
 *   1. Write cli/<name>Command.ts exporting `register(program: Command, ctx: CliContext): void`.
 *      In it: `program.command("<name>")` with `.summary()`, `.description()`, `.argument()` and
 *      `.option()`s (commander gives it --help and rejects unknown or missing options with exit 2);
 *      `addBackendOptions(cmd)` (cli/backendOptions.ts) for --backend/--pool/--hosts; and
 *      `.action(runAction(ctx, "<name>", async (...args, opts) => ({ code, text?, value? })))`
 *      (cli/program.ts). runAction prints `text`/`value` on stdout and maps a thrown error to its
 *      exit code (core/errors.ts), so refusals exit 3 on every backend. Build backends with
 *      `backendFrom(ctx, opts)` (tests inject a fake through ctx.createBackend); write progress to
 *      ctx.stderr (cli/log.ts: stepReporter, pino JSON lines) and results to ctx.stdout.
 *   2. Add one line to COMMANDS below.
 *
 * Exit codes, the same for every backend (core/errors.ts EXIT): 0 done, 1 failed, 2 usage
 * (commander's parse errors included), 3 refused (e.g. split brain: nothing was changed),
 * 4 a drill check failed.
 */
import { Command, CommanderError } from "commander";
import { EXIT } from "../core/errors";
import { CliContext, exitCodeOfCommanderError, processContext } from "./program";
import * as stack from "./stackCommand";
import * as scheduler from "./schedulerCommand";
import * as recoverCommand from "./recoverCommand";
import * as drill from "./drillCommand";
import * as repository from "./repositoryCommand";
import * as agent from "./agentCommand";
import * as manager from "./managerCommand";

type Register = (program: Command, ctx: CliContext) => void;

/** Every command, in the order `--help` lists them. One line per command. */
const COMMANDS: Register[] = [stack.register, scheduler.register, recoverCommand.register, drill.register, repository.register, agent.register, manager.register];

/** The whole command tree, writing to ctx's streams and throwing instead of exiting. */
export function buildProgram(ctx: CliContext): Command {
  const program = new Command("protected-vm")
    .description("Fault tolerance for libvirt/KVM and CloudStack VMs by repeated memory+disk snapshots.")
    .addHelpText("after", "\nExit codes: 0 done, 1 failed, 2 usage, 3 refused (nothing changed), 4 drill check failed.")
    // Inherited by every command registered after this: throw CommanderError (mapped to exit 2)
    // instead of process.exit(1), write to ctx's streams, reject extra arguments.
    .exitOverride()
    .configureOutput({ writeOut: (s) => void ctx.stdout.write(s), writeErr: (s) => void ctx.stderr.write(s) })
    .showHelpAfterError("(add --help for usage)")
    .allowExcessArguments(false);
  for (const register of COMMANDS) register(program, ctx);
  return program;
}

/** Runs the CLI on argv (without node and script) and returns the exit code. */
export async function main(argv: string[], ctx: CliContext = processContext()): Promise<number> {
  const program = buildProgram(ctx);
  try {
    await program.parseAsync(argv, { from: "user" });
    return ctx.exitCode;
  } catch (e) {
    if (e instanceof CommanderError) return exitCodeOfCommanderError(e);
    // runAction catches a command's own errors; this is a bug in the CLI itself.
    ctx.stderr.write(`protected-vm: ${(e as Error).stack ?? e}\n`);
    return EXIT.failed;
  }
}

if (require.main === module) {
  main(process.argv.slice(2)).then((code) => process.exit(code));
}
