/**
 * `protected-vm agent --host URI --etcd URL[,URL...] [--lease-ttl-ms N] [--fence-safety-ms N]
 *  [--capacity-mib N] [--snapshot-concurrency N] [--metrics-port N] [--pool P]`: the per-host HA
 * agent (ops/agent.ts). Logs one JSON line per event (pino) on stdout; runs until SIGTERM/SIGINT.
 * Exit 0 when stopped, 2 bad options, 1 failed.
 */
import pino from "pino";
import { Command } from "commander";
import { CliContext, collectList, count, positiveNumber, runAction } from "./program";
import { Agent } from "../ops/agent";
import { EtcdCoordination } from "../ops/coordination/etcd";
import { HaMetrics } from "../ops/haMetrics";
import { createBackend } from "../hypervisor/createBackend";
import { EXIT } from "../core/errors";
import { spawnSnapshotLoop } from "./snapshotLoopProcess";
import { runUntilStopped } from "./haProcessRun";

export interface AgentCommandOptions {
  /** This host, as the backend names it (libvirt URI). */
  host: string;
  /** etcd client URLs. */
  etcd: string[];
  /** libvirt storage pool. */
  pool?: string;
  leaseTtlMs?: number;
  fenceSafetyMs?: number;
  tickMs?: number;
  capacityMiB?: number;
  snapshotConcurrency?: number;
  cpuSampleMs?: number;
  /** Serve /metrics on 127.0.0.1:port. */
  metricsPort?: number;
  /** Key prefix in etcd (default /protected-vm/). */
  prefix?: string;
  /** Stop when this aborts (tests); otherwise SIGTERM/SIGINT. */
  signal?: AbortSignal;
}

export async function agentCommand(o: AgentCommandOptions): Promise<number> {
  const log = pino({ base: { role: "agent", host: o.host } });
  if (!o.host || !o.etcd.length) {
    log.error("--host and --etcd are required");
    return EXIT.usage;
  }
  const coordination = new EtcdCoordination({ endpoints: o.etcd });
  const metrics = new HaMetrics();
  const agent = new Agent({
    host: o.host, backend: createBackend({ kind: "libvirt", pool: o.pool }), coordination, prefix: o.prefix,
    leaseTtlMs: o.leaseTtlMs, fenceSafetyMs: o.fenceSafetyMs, tickMs: o.tickMs, capacityMiB: o.capacityMiB,
    snapshotConcurrency: o.snapshotConcurrency, cpuSampleMs: o.cpuSampleMs,
    log: (e) => log.info(e),
    onSchedulerEvent: (e) => {
      metrics.onSchedulerEvent(e);
      log.info({ source: `agent/${o.host}`, ...e });
    },
    onLease: metrics.onAgentLease(o.host),
    startSnapshotLoop: (vms, onEvent) =>
      spawnSnapshotLoop({ host: o.host, vms, pool: o.pool, concurrency: o.snapshotConcurrency ?? 2, cpuSampleMs: o.cpuSampleMs }, onEvent),
  });
  return runUntilStopped(agent, { log, metrics, metricsPort: o.metricsPort, coordination, signal: o.signal });
}

export function register(program: Command, ctx: CliContext): void {
  program
    .command("agent")
    .summary("per-host HA agent: host lease, self-fencing, snapshot loop")
    .description(
      "Run the HA agent of one hypervisor host until SIGTERM/SIGINT: hold the host's lease in etcd, snapshot the protected VMs " +
        "this host owns, destroy them itself when the lease cannot be renewed (before it can expire elsewhere), and destroy " +
        "a copy that etcd says another host now owns. One JSON line per event on stdout.",
    )
    .requiredOption("--host <uri>", "this host, as the backend names it (libvirt URI)")
    .requiredOption("--etcd <urls>", "etcd client URLs (comma-separated or repeated)", collectList)
    .option("--pool <name>", "libvirt storage pool")
    .option("--lease-ttl-ms <ms>", "host lease TTL", positiveNumber)
    .option("--fence-safety-ms <ms>", "self-fence this long before the lease could expire", positiveNumber)
    .option("--tick-ms <ms>", "how often to look at etcd and the host", positiveNumber)
    .option("--capacity-mib <mib>", "memory this host offers to recovered VMs", positiveNumber)
    .option("--snapshot-concurrency <n>", "snapshots taken at once on this host", positiveNumber)
    .option("--cpu-sample-ms <ms>", "CPU sampling window for the load-adaptive interval", positiveNumber)
    .option("--metrics-port <port>", "serve Prometheus /metrics on 127.0.0.1:port (0: any free port)", count)
    .option("--prefix <prefix>", "key prefix in etcd (default /protected-vm/)")
    .action(runAction(ctx, "agent", async (opts: Omit<AgentCommandOptions, "signal">) => ({ code: await agentCommand(opts) })));
}
