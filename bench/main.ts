/**
 * `npm run bench` - the benchmark on the lab (bash lab/lab.sh up). Writes
 * bench-results/<timestamp>/{results.csv, report.md, *.svg}.
 *
 *   node dist/bench/main.js [--smoke | --full] [--out DIR] [--only take-restore,recovery,overhead,pause]
 *   node dist/bench/main.js --report DIR     (re-render report.md and the SVGs from DIR/results.csv)
 *
 * Default is the quick grid; PVBENCH_MODE=smoke|quick|full does the same as the flags.
 * Needs root and the lab; every domain it creates is named pvbench-* and removed afterwards.
 */
import * as fs from "fs";
import * as path from "path";
import { LibvirtBackend } from "../hypervisor/libvirt/backend";
import { ensureLab, repoRoot } from "../lab/lab";
import { CONFIGS, Mode } from "./config";
import { BenchContext, makeRepoFns } from "./context";
import { cleanupAll } from "./guest";
import { measureMachine, Machine } from "./machine";
import { runOverhead } from "./overhead";
import { runPause } from "./pause";
import { runRecovery } from "./recovery";
import { Recorder, parseCsv } from "./results";
import { writeReport, RunMeta } from "./report";
import { runTakeRestore } from "./takeRestore";
import { TICK_MS } from "./guest";
import { progress } from "../lib/progress";

const SECTIONS = ["take-restore", "recovery", "overhead", "pause"] as const;
type Section = (typeof SECTIONS)[number];

interface Args {
  mode: Mode;
  out?: string;
  only: Section[];
  reportOnly?: string;
}

function parseArgs(argv: string[]): Args {
  const env = process.env.PVBENCH_MODE as Mode | undefined;
  const a: Args = { mode: env && env in CONFIGS ? env : "quick", only: [...SECTIONS] };
  for (let i = 0; i < argv.length; i++) {
    const x = argv[i];
    if (x === "--smoke") a.mode = "smoke";
    else if (x === "--quick") a.mode = "quick";
    else if (x === "--full") a.mode = "full";
    else if (x === "--out") a.out = argv[++i];
    else if (x === "--report") a.reportOnly = argv[++i];
    else if (x === "--only") {
      const want = (argv[++i] ?? "").split(",").filter(Boolean);
      for (const w of want) if (!(SECTIONS as readonly string[]).includes(w)) throw new Error(`unknown section ${w}; one of ${SECTIONS.join(", ")}`);
      a.only = want as Section[];
    } else if (x === "--help" || x === "-h") {
      console.log("usage: node dist/bench/main.js [--smoke|--quick|--full] [--out DIR] [--only take-restore,recovery,overhead,pause] | --report DIR");
      process.exit(0);
    } else throw new Error(`unknown argument ${x}`);
  }
  return a;
}

function stamp(d = new Date()): string {
  return d.toISOString().replace(/[:]/g, "").replace(/\..*$/, "Z");
}

export async function main(argv = process.argv.slice(2)): Promise<string> {
  const args = parseArgs(argv);
  if (args.reportOnly) {
    const dir = path.resolve(args.reportOnly);
    const meta = JSON.parse(fs.readFileSync(path.join(dir, "run.json"), "utf8")) as RunMeta;
    writeReport(dir, parseCsv(fs.readFileSync(path.join(dir, "results.csv"), "utf8")), meta);
    return dir;
  }
  const cfg = CONFIGS[args.mode];
  const started = new Date();
  const out = path.resolve(args.out ?? path.join(repoRoot(), "bench-results", `${stamp(started)}-${args.mode}`));
  fs.mkdirSync(out, { recursive: true });
  // A section bar on stderr when it is a terminal; the log lines print above it (else plain, as before).
  const bar = progress({ title: `bench ${args.mode}`, total: args.only.length, plain: (line) => console.log(line) });
  const log = (msg: string) => {
    const line = `[bench ${((Date.now() - started.getTime()) / 1000).toFixed(0).padStart(4)} s] ${msg}`;
    bar.log(line);
    fs.appendFileSync(path.join(out, "bench.log"), line + "\n");
  };
  const rec = new Recorder(path.join(out, "results.csv"));
  const lab = await ensureLab();
  const backend = new LibvirtBackend({ pool: lab.hosts.a.pool });
  const runId = stamp(started).toLowerCase().replace(/[^0-9a-z]/g, "");
  log(`mode ${args.mode}, sections ${args.only.join(", ")}, results in ${out}`);
  const machine: Machine = await measureMachine(lab.repository, cfg.diskTestMiB, rec);
  log(`machine: ${machine.cpuModel}, ${machine.cores} cores, ${machine.memoryMiB} MiB, disk write ${machine.diskWriteMBs.toFixed(0)} MB/s, read ${machine.diskReadMBs.toFixed(0)} MB/s`);
  const ctx: BenchContext = { lab, backend, rec, machine, runId, log, ...makeRepoFns(lab, runId) };
  const errors: string[] = [];
  // Ctrl-C / kill: remove this run's domains before leaving.
  const onSignal = (sig: NodeJS.Signals) => {
    log(`${sig}: cleaning up pvbench-* domains`);
    cleanupAll(lab, backend.virsh).finally(() => process.exit(130));
  };
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  const sectionSeconds: Record<string, number> = {};
  const pauseFromTake = (e: { calledAt: number; returnedAt: number; record: { pauseMs?: number } }, g: { tap: { longestTickGap(a: number, b: number): { gapMs: number } } }, section: string, memMiB: number, loadPct: number) => {
    rec.add({ section, variant: "ours", memMiB, loadPct, metric: "guest_pause", value: g.tap.longestTickGap(e.calledAt, e.returnedAt).gapMs, unit: "ms" });
  };
  try {
    for (const [i, s] of args.only.entries()) {
      bar.step(i, s);
      const t0 = Date.now();
      try {
        if (s === "take-restore") await runTakeRestore(ctx, cfg.takeRestore);
        if (s === "recovery") await runRecovery(ctx, cfg.recovery);
        if (s === "overhead") await runOverhead(ctx, cfg.overhead, (e, g, section) => pauseFromTake(e, g, section, g.spec.memoryMiB, cfg.overhead.workloads[0].fillPct));
        if (s === "pause") await runPause(ctx, cfg.pause);
      } catch (e) {
        const msg = `${s} failed: ${(e as Error).stack ?? e}`;
        errors.push(msg);
        log(msg);
      } finally {
        sectionSeconds[s] = (Date.now() - t0) / 1000;
        rec.add({ section: "run", variant: s, metric: "wall", value: sectionSeconds[s], unit: "s" });
        log(`${s}: ${sectionSeconds[s].toFixed(0)} s`);
      }
    }
  } finally {
    bar.stop();
    await cleanupAll(lab, backend.virsh);
    process.removeListener("SIGINT", onSignal);
    process.removeListener("SIGTERM", onSignal);
  }
  const meta: RunMeta = {
    mode: args.mode,
    sections: args.only,
    startedAt: started.toISOString(),
    wallSeconds: (Date.now() - started.getTime()) / 1000,
    sectionSeconds,
    machine,
    config: cfg,
    tickMs: TICK_MS,
    errors,
  };
  rec.add({ section: "run", variant: "total", metric: "wall", value: meta.wallSeconds, unit: "s" });
  fs.writeFileSync(path.join(out, "run.json"), JSON.stringify(meta, null, 2));
  writeReport(out, rec.rows, meta);
  log(`done in ${meta.wallSeconds.toFixed(0)} s: ${path.join(out, "report.md")}${errors.length ? ` (${errors.length} section(s) failed)` : ""}`);
  if (errors.length) process.exitCode = 1;
  return out;
}

if (require.main === module) {
  main().catch((e) => {
    console.error(e);
    process.exit(1);
  });
}
