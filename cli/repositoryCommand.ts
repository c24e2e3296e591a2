/**
 * `protected-vm repository check --repository DIR [--read-data] [--repair] [--source FILE]... [--json]`
 *
 * Checks every snapshot's chunks (restic's `check --read-data` is the model: --read-data re-reads
 * and rehashes every chunk; without it only presence and size are checked), lists the damaged
 * chunks and the snapshots they break, and with --repair rewrites damaged chunks from the
 * --source files or quarantines the snapshots that need them (see repository/check.ts).
 *
 * Exit codes: 0 no damage (or all of it repaired), 1 damage found and not repaired (quarantined
 * counts as not repaired), 2 usage.
 *
 * The check itself is a function with typed options returning the exit code (tests call it
 * directly); `register` puts it on the commander tree.
 */
import { Command } from "commander";
import { EXIT } from "../core/errors";
import { CliContext, collectRaw, runAction } from "./program";
import { checkRepository, CheckReport } from "../repository/check";
import { SnapshotRepository } from "../repository/repository";

export interface RepositoryCheckOptions {
  repository: string;
  readData?: boolean;
  repair?: boolean;
  sources?: string[];
  json?: boolean;
  /** Where the report goes (default stdout / stderr). */
  out?: (text: string) => void;
  err?: (text: string) => void;
}

export const REPOSITORY_USAGE = "usage: protected-vm repository check --repository DIR [--read-data] [--repair] [--source FILE]... [--json]";

export async function repositoryCheckCommand(opts: RepositoryCheckOptions): Promise<number> {
  const out = opts.out ?? ((t: string) => void process.stdout.write(t));
  const err = opts.err ?? ((t: string) => void process.stderr.write(t));
  if (!opts.repository) {
    err(`${REPOSITORY_USAGE}\n--repository is required\n`);
    return EXIT.usage;
  }
  if (opts.sources?.length && !opts.repair) {
    err(`${REPOSITORY_USAGE}\n--source is only used with --repair\n`);
    return EXIT.usage;
  }
  let report: CheckReport;
  try {
    const repo = new SnapshotRepository(opts.repository);
    report = await checkRepository(repo, { readData: opts.readData, repair: opts.repair, sources: opts.sources });
  } catch (e) {
    err(`protected-vm repository check: ${(e as Error).message}\n`);
    return EXIT.failed;
  }
  out(opts.json ? JSON.stringify(report) + "\n" : formatReport(opts.repository, report));
  return report.unrepairedDamage ? EXIT.failed : EXIT.ok;
}

export function formatReport(root: string, r: CheckReport): string {
  const lines: string[] = [];
  lines.push(`repository ${root}: ${r.manifests} snapshots, ${r.chunksChecked} chunks ${r.readData ? `read and rehashed (${r.bytesRead} bytes)` : "checked for presence and size (--read-data also rehashes)"}`);
  for (const m of r.damagedManifests) lines.push(`damaged manifest ${m.path}: ${m.problem}`);
  for (const c of r.damagedChunks) lines.push(`damaged chunk ${c.sha256} (${c.size} bytes): ${c.problem}; needed by ${c.snapshots.join(", ")}`);
  if (r.affectedSnapshots.length) lines.push(`snapshots affected: ${r.affectedSnapshots.join(", ")}`);
  for (const x of r.repaired) lines.push(`repaired chunk ${x.sha256} from ${x.source}`);
  for (const s of r.quarantined) lines.push(`quarantined ${s} (not restorable until its chunks are good again)`);
  for (const s of r.restored) lines.push(`restored ${s} (its chunks are good again)`);
  for (const q of r.alreadyQuarantined) if (!r.restored.includes(q.snapshot)) lines.push(`already quarantined ${q.snapshot}${q.problems.length ? `: ${q.problems.join("; ")}` : ""}`);
  lines.push(r.ok ? "ok" : r.unrepairedDamage ? "damage found and not repaired" : "damage found");
  return lines.join("\n") + "\n";
}

export function register(program: Command, ctx: CliContext): void {
  const repository = program
    .command("repository")
    .summary("check and repair a snapshot repository")
    .description("Commands on a snapshot repository (the policy's `repository` directory).");
  repository
    .command("check")
    .summary("check every snapshot's chunks; --repair rewrites or quarantines damaged ones")
    .description(
      "Checks every snapshot's chunks and lists the damaged ones with the snapshots they break (restic's `check` is the model).\n" +
        "Exit 0: no damage (or all of it repaired); 1: damage found and not repaired (quarantined counts as not repaired); 2: usage.",
    )
    .requiredOption("--repository <dir>", "the snapshot repository")
    .option("--read-data", "re-read and rehash every chunk (default: presence and size only)")
    .option("--repair", "rewrite damaged chunks from --source files, else quarantine the snapshots that need them")
    .option("--source <file>", "a file holding good copies of damaged chunks (repeatable; only with --repair)", collectRaw)
    .option("--json", "print the report as one JSON line")
    .action(
      runAction(ctx, "repository check", async (opts: { repository: string; readData?: boolean; repair?: boolean; source?: string[]; json?: boolean }) => {
        let text = "";
        const code = await repositoryCheckCommand({
          repository: opts.repository,
          readData: !!opts.readData,
          repair: !!opts.repair,
          sources: opts.source ?? [],
          json: !!opts.json,
          out: (t) => void (text += t),
          err: (t) => void ctx.stderr.write(t),
        });
        return { code, text };
      }),
    );
}
