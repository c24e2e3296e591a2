/**
 * `protected-vm drill VM --hosts PRIMARY,RECOVERY... --repository DIR [--to HOST]
 *    [--max-rpo-seconds N] [--rpo-factor F] [--console-check] [--keep] [--json] [--pool P]`
 * `protected-vm drill --cleanup VM --hosts ... [--repository DIR] [--force] [--json]`
 *
 * Exit codes CI can act on: 0 drill passed (cleanup: nothing left), 4 the drill ran but failed a
 * check (snapshot too old, copy not running, guest not continuing, production changed, copy
 * left behind), 3 refused (no snapshot, no recovery host, VM not found, drill still running),
 * 2 usage, 1 error. Output: a text report, or one JSON object with --json. Progress on stderr.
 */
import { ParsedArgs, UsageError, boolFlag, flag } from "./args";
import { backendFromArgs, hostsFromArgs } from "./backendArgs";
import { cleanupDrills, formatDrillReport, libvirtConsoleProbe, runDrill } from "../ops/drill";

export const DRILL_FAILED_EXIT = 4;

function num(args: ParsedArgs, name: string): number | undefined {
  const v = flag(args, name);
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) throw new UsageError(`--${name} takes a number > 0, got ${JSON.stringify(v)}`);
  return n;
}

/** Write the output, then exit with `code` (main() only knows 0 or an exception's code). */
async function finish(text: string, code: number): Promise<undefined> {
  await new Promise<void>((r) => process.stdout.write(text, () => r()));
  if (code !== 0) process.exit(code);
  return undefined;
}

export async function drillCommand(args: ParsedArgs): Promise<undefined> {
  const json = boolFlag(args, "json");
  const cleanupFlag = flag(args, "cleanup");
  const cleanup = cleanupFlag !== undefined && cleanupFlag !== "false";
  // `--cleanup VM` parses as cleanup=VM; `VM --cleanup` as a positional plus cleanup=true.
  const vm = args.positionals[1] ?? (cleanup && cleanupFlag !== "true" ? cleanupFlag : undefined);
  if (!vm) {
    throw new UsageError(
      "usage: protected-vm drill VM --hosts PRIMARY,RECOVERY... --repository DIR [--to HOST] [--max-rpo-seconds N] [--console-check] [--keep] [--json]\n" +
        "       protected-vm drill --cleanup VM --hosts HOST,... [--repository DIR] [--force] [--json]",
    );
  }
  const backend = backendFromArgs(args);
  const hosts = hostsFromArgs(args);
  const progress = (e: { step: string; detail: string }) => process.stderr.write(`${json ? JSON.stringify(e) : `[${e.step}] ${e.detail}`}\n`);

  if (cleanup) {
    const r = await cleanupDrills(backend, vm, {
      hosts,
      repository: flag(args, "repository"),
      stateDir: flag(args, "state-dir"),
      force: boolFlag(args, "force"),
      onEvent: progress,
    });
    const ok = r.remaining.length === 0;
    const text = json
      ? JSON.stringify({ ok, ...r }) + "\n"
      : `drill cleanup of ${vm}: ${r.removed.length ? `removed ${r.removed.join(", ")}` : "nothing to remove"}` +
        (r.snapshotsDeleted.length ? `; deleted snapshots ${r.snapshotsDeleted.join(", ")}` : "") +
        (ok ? "\n" : `\nSTILL THERE: ${r.remaining.join("; ")}\n`);
    return finish(text, ok ? 0 : DRILL_FAILED_EXIT);
  }

  const repository = flag(args, "repository");
  if (!repository) throw new UsageError("--repository is required (the policy's snapshot repository)");
  const report = await runDrill(backend, vm, {
    repository,
    hosts,
    to: flag(args, "to"),
    maxRpoSeconds: num(args, "max-rpo-seconds"),
    rpoFactor: num(args, "rpo-factor"),
    verifyMs: num(args, "verify-ms"),
    keep: boolFlag(args, "keep"),
    stateDir: flag(args, "state-dir"),
    guestProbe: boolFlag(args, "console-check")
      ? libvirtConsoleProbe(backend, {
          pattern: flag(args, "console-pattern") ? new RegExp(flag(args, "console-pattern")!, "gm") : undefined,
          watchMs: num(args, "console-watch-ms"),
        })
      : undefined,
    onEvent: progress,
  });
  const code = report.ok ? 0 : DRILL_FAILED_EXIT;
  return finish(json ? JSON.stringify(report) + "\n" : formatDrillReport(report), code);
}
