/**
 * `protected-vm drill VM --hosts PRIMARY,RECOVERY... --repository DIR [--to HOST]
 *    [--max-rpo-seconds N] [--rpo-factor F] [--console-check] [--keep] [--json] [--pool P]`
 * `protected-vm drill --cleanup VM --hosts ... [--repository DIR] [--force] [--json]`
 *
 * Exit codes CI can act on: 0 drill passed (cleanup: nothing left), 4 the drill ran but failed a
 * check (snapshot too old, copy not running, guest not continuing, production changed, copy
 * left behind), 3 refused (no snapshot, no recovery host, VM not found, drill still running, or
 * the backend refused the restore), 2 usage, 1 error. Output: a text report, or one JSON object
 * with --json. Progress on stderr.
 */
import { Command } from "commander";
import { EXIT } from "../core/errors";
import { cleanupDrills, formatDrillReport, libvirtConsoleProbe, runDrill } from "../ops/drill";
import { addBackendOptions, backendFrom, BackendOptions, hostsFrom } from "./backendOptions";
import { stepReporter } from "./log";
import { CliContext, CommandResult, UsageError, positiveNumber, runAction } from "./program";

interface DrillOptions extends BackendOptions {
  cleanup?: boolean;
  repository?: string;
  to?: string;
  maxRpoSeconds?: number;
  rpoFactor?: number;
  verifyMs?: number;
  consoleCheck?: boolean;
  consolePattern?: string;
  consoleWatchMs?: number;
  keep?: boolean;
  force?: boolean;
  stateDir?: string;
  json?: boolean;
}

/** The drill's steps in order, for the progress bar. */
export const DRILL_STEPS = ["production", "select-snapshot", "restore", "verify", "cleanup", "done"] as const;

function cleanupText(vm: string, r: { removed: string[]; snapshotsDeleted: string[]; remaining: string[] }): string {
  const ok = r.remaining.length === 0;
  return (
    `drill cleanup of ${vm}: ${r.removed.length ? `removed ${r.removed.join(", ")}` : "nothing to remove"}` +
    (r.snapshotsDeleted.length ? `; deleted snapshots ${r.snapshotsDeleted.join(", ")}` : "") +
    (ok ? "\n" : `\nSTILL THERE: ${r.remaining.join("; ")}\n`)
  );
}

export function register(program: Command, ctx: CliContext): void {
  const cmd = program
    .command("drill")
    .summary("prove a VM can be recovered: restore a copy, check it, remove it")
    .description(
      "Restore the newest complete snapshot of VM on a recovery host as VM-drill-<id>, check that the copy runs,\n" +
        "that the snapshot is recent enough and that production is untouched; report RPO/RTO; remove the copy.\n" +
        "With --cleanup: remove every VM-drill-* copy (and its files and snapshots) left by a drill killed halfway.\n" +
        "Exit: 0 passed, 4 a check failed, 3 refused, 2 usage, 1 error.",
    )
    .argument("<vm>", "name of the protected (production) VM");
  addBackendOptions(cmd)
    .option("--cleanup", "remove leftover drill copies of VM instead of running a drill")
    .option("--repository <dir>", "the policy's snapshot repository (required for a drill; with --cleanup also deletes snapshots of copies)")
    .option("--to <host>", "restore the copy on this host")
    .option("--max-rpo-seconds <n>", "fail when the newest snapshot is older (default: the VM's maxIntervalSeconds x --rpo-factor)", positiveNumber)
    .option("--rpo-factor <f>", "multiplier of maxIntervalSeconds for the default RPO limit (default 2)", positiveNumber)
    .option("--verify-ms <ms>", "how long the copy must stay running to count as restored", positiveNumber)
    .option("--console-check", "libvirt: check that the copy's console counter continues from the snapshot")
    .option("--console-pattern <regexp>", "with --console-check: the counter's line, one capture group (default ^PVCOUNT (\\d+))")
    .option("--console-watch-ms <ms>", "with --console-check: how long to watch the console", positiveNumber)
    .option("--keep", "leave the copy running (remove it later with --cleanup)")
    .option("--force", "with --cleanup: clean up even while a drill of VM runs on this machine")
    .option("--state-dir <dir>", "where drills in progress are recorded (default $TMPDIR/protected-vm-drills)")
    .option("--json", "print the report as one JSON object; progress as JSON lines on stderr")
    .action(
      runAction(ctx, "drill", async (vm: string, opts: DrillOptions): Promise<CommandResult> => {
        const json = !!opts.json;
        if (!opts.cleanup && !opts.repository) throw new UsageError("--repository <dir> is required for a drill (the policy's snapshot repository)");
        let pattern: RegExp | undefined;
        if (opts.consolePattern !== undefined) {
          try {
            pattern = new RegExp(opts.consolePattern, "gm");
          } catch (e) {
            throw new UsageError(`--console-pattern is not a regular expression: ${(e as Error).message}`);
          }
        }
        const backend = backendFrom(ctx, opts);
        const hosts = hostsFrom(opts);
        const progress = stepReporter(ctx.stderr, { json, title: `drill ${vm}`, steps: opts.cleanup ? ["cleanup"] : DRILL_STEPS });
        try {
          if (opts.cleanup) {
            const r = await cleanupDrills(backend, vm, { hosts, repository: opts.repository, stateDir: opts.stateDir, force: !!opts.force, onEvent: (e) => progress.onEvent(e) });
            const ok = r.remaining.length === 0;
            const code = ok ? EXIT.ok : EXIT.checkFailed;
            return json ? { code, text: JSON.stringify({ ok, ...r }) + "\n" } : { code, text: cleanupText(vm, r) };
          }
          const report = await runDrill(backend, vm, {
            repository: opts.repository!,
            hosts,
            to: opts.to,
            maxRpoSeconds: opts.maxRpoSeconds,
            rpoFactor: opts.rpoFactor,
            verifyMs: opts.verifyMs,
            keep: !!opts.keep,
            stateDir: opts.stateDir,
            guestProbe: opts.consoleCheck ? libvirtConsoleProbe(backend, { pattern, watchMs: opts.consoleWatchMs }) : undefined,
            onEvent: (e) => progress.onEvent(e),
          });
          const code = report.ok ? EXIT.ok : EXIT.checkFailed;
          return { code, text: json ? JSON.stringify(report) + "\n" : formatDrillReport(report) };
        } finally {
          progress.stop();
        }
      }),
    );
}
