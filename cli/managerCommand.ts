/**
 * `protected-vm manager --id NAME --etcd URL[,URL...] [--fencing-margin-ms N] [--lease-ttl-ms N]
 *  [--verify-ms N] [--metrics-port N] [--pool P]`: an HA manager (ops/manager.ts); run several,
 * one leads. Logs one JSON line per event (pino) on stdout; runs until SIGTERM/SIGINT.
 * Exit 0 when stopped, 2 bad options, 1 failed.
 */
import pino from "pino";
import { Command } from "commander";
import { CliContext, collectList, count, positiveNumber, runAction } from "./program";
import * as os from "os";
import { Manager } from "../ops/manager";
import { EtcdCoordination } from "../ops/coordination/etcd";
import { HaMetrics } from "../ops/haMetrics";
import { createBackend } from "../hypervisor/createBackend";
import { EXIT } from "../core/errors";
import { runUntilStopped } from "./haProcessRun";

export interface ManagerCommandOptions {
  /** Unique among managers; default hostname:pid. */
  id?: string;
  etcd: string[];
  pool?: string;
  fencingMarginMs?: number;
  leaseTtlMs?: number;
  tickMs?: number;
  verifyMs?: number;
  metricsPort?: number;
  prefix?: string;
  signal?: AbortSignal;
}

export async function managerCommand(o: ManagerCommandOptions): Promise<number> {
  const id = o.id ?? `${os.hostname()}:${process.pid}`;
  const log = pino({ base: { role: "manager", id } });
  if (!o.etcd.length) {
    log.error("--etcd is required");
    return EXIT.usage;
  }
  const coordination = new EtcdCoordination({ endpoints: o.etcd });
  const metrics = new HaMetrics();
  const manager = new Manager({
    id, backend: createBackend({ kind: "libvirt", pool: o.pool }), coordination, prefix: o.prefix,
    fencingMarginMs: o.fencingMarginMs, leaseTtlMs: o.leaseTtlMs, tickMs: o.tickMs, verifyMs: o.verifyMs,
    log: (e) => log.info(e),
    onRecovery: metrics.onRecovery,
    onHosts: metrics.onHosts,
    onLeadership: (l) => metrics.setLeader(l),
  });
  return runUntilStopped(manager, { log, metrics, metricsPort: o.metricsPort, coordination, signal: o.signal });
}

export function register(program: Command, ctx: CliContext): void {
  program
    .command("manager")
    .summary("HA manager: one leader recovers the VMs of hosts whose lease expired")
    .description(
      "Run an HA manager until SIGTERM/SIGINT (run several: one is elected leader through etcd). When a host's lease expires, " +
        "after the fencing margin, the leader recovers each VM that host owned onto its first healthy recovery host from the " +
        "newest complete snapshot, recording the new owner with a compare-and-swap. One JSON line per event on stdout.",
    )
    .requiredOption("--etcd <urls>", "etcd client URLs (comma-separated or repeated)", collectList)
    .option("--id <name>", "unique among managers (default hostname:pid)")
    .option("--pool <name>", "libvirt storage pool")
    .option("--fencing-margin-ms <ms>", "wait this long after a lease expired before recovering", positiveNumber)
    .option("--lease-ttl-ms <ms>", "the leader's election lease TTL", positiveNumber)
    .option("--tick-ms <ms>", "how often to look at etcd", positiveNumber)
    .option("--verify-ms <ms>", "how long a recovered guest must stay running", positiveNumber)
    .option("--metrics-port <port>", "serve Prometheus /metrics on 127.0.0.1:port (0: any free port)", count)
    .option("--prefix <prefix>", "key prefix in etcd (default /protected-vm/)")
    .action(runAction(ctx, "manager", async (opts: Omit<ManagerCommandOptions, "signal">) => ({ code: await managerCommand(opts) })));
}
