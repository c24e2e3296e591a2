/**
 * `protected-vm recover VM --hosts PRIMARY,RECOVERY... --repository DIR [--to HOST]
 *  [--snapshot ID] [--force] [--json]`. Exit 0 recovered (or already recovered), 3 refused
 * (split brain, no snapshot, no healthy host - on every backend), 1 failed, 2 usage.
 * The report goes to stdout; progress (each state-machine step) to stderr.
 */
import { Command } from "commander";
import { recover } from "../ops/recover";
import { EXIT } from "../core/errors";
import { addBackendOptions, backendFrom, BackendOptions, hostsFrom } from "./backendOptions";
import { stepReporter } from "./log";
import { CliContext, runAction } from "./program";

interface RecoverOptions extends BackendOptions {
  repository: string;
  to?: string;
  snapshot?: string;
  force?: boolean;
  json?: boolean;
}

/** The steps of recover()'s state machine, in order, for the progress bar (fence is optional). */
export const RECOVERY_STEPS = ["locate", "select-snapshot", "restore", "verify", "record", "done"] as const;

export function register(program: Command, ctx: CliContext): void {
  const cmd = program
    .command("recover")
    .summary("resume a VM on a recovery host from its newest complete snapshot")
    .description(
      "Resume VM on the first healthy recovery host from its newest complete, verified snapshot.\n" +
        "Refuses (exit 3) while the VM still runs on its live primary (a second copy would be split brain) unless --force.\n" +
        "Safe to run twice: a VM already running on a recovery host is reported as alreadyRecovered.",
    )
    .argument("<vm>", "name of the protected VM");
  addBackendOptions(cmd)
    .requiredOption("--repository <dir>", "the policy's snapshot repository (CloudStack: primary or secondary)")
    .option("--to <host>", "recover onto this host instead of the first healthy recovery host")
    .option("--snapshot <id>", "use this snapshot instead of the newest complete one")
    .option("--force", "stop the VM where it still runs, then recover anyway")
    .option("--json", "print the report as one JSON line; progress as JSON lines on stderr")
    .action(
      runAction(ctx, "recover", async (vm: string, opts: RecoverOptions) => {
        const backend = backendFrom(ctx, opts);
        const progress = stepReporter(ctx.stderr, { json: !!opts.json, title: `recover ${vm}`, steps: RECOVERY_STEPS });
        try {
          const report = await recover(backend, vm, {
            repository: opts.repository,
            hosts: hostsFrom(opts),
            to: opts.to,
            snapshotId: opts.snapshot,
            force: !!opts.force,
            onEvent: (e) => progress.onEvent(e),
          });
          return { code: EXIT.ok, value: report };
        } finally {
          progress.stop();
        }
      }),
    );
}
