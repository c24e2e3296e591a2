/**
 * `protected-vm agent --host URI --etcd URL[,URL...] [--lease-ttl-ms N] [--fence-safety-ms N]
 *  [--capacity-mib N] [--snapshot-concurrency N] [--metrics-port N] [--pool P]`: the per-host HA
 * agent (ops/agent.ts). Logs one JSON line per event (pino) on stdout; runs until SIGTERM/SIGINT.
 * Exit 0 when stopped, 2 bad options, 1 failed.
 */
import pino from "pino";
import { Agent } from "../ops/agent";
import { EtcdCoordination } from "../ops/coordination/etcd";
import { HaMetrics } from "../ops/haMetrics";
import { createBackend } from "../hypervisor/createBackend";
import { EXIT } from "../core/errors";
import { spawnSnapshotLoop } from "./snapshotLoopProcess";

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
  const server = o.metricsPort !== undefined ? await metrics.serve(o.metricsPort) : undefined;
  if (server) log.info({ event: "metrics", port: server.port });
  const stop = () => agent.stop();
  process.once("SIGTERM", stop);
  process.once("SIGINT", stop);
  o.signal?.addEventListener("abort", stop);
  try {
    await agent.run();
    return EXIT.ok;
  } catch (e) {
    log.error({ error: (e as Error).message });
    return EXIT.failed;
  } finally {
    process.off("SIGTERM", stop);
    process.off("SIGINT", stop);
    await server?.close();
    await coordination.close();
  }
}
