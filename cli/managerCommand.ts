/**
 * `protected-vm manager --id NAME --etcd URL[,URL...] [--fencing-margin-ms N] [--lease-ttl-ms N]
 *  [--verify-ms N] [--metrics-port N] [--pool P]`: an HA manager (ops/manager.ts); run several,
 * one leads. Logs one JSON line per event (pino) on stdout; runs until SIGTERM/SIGINT.
 * Exit 0 when stopped, 2 bad options, 1 failed.
 */
import pino from "pino";
import * as os from "os";
import { Manager } from "../ops/manager";
import { EtcdCoordination } from "../ops/coordination/etcd";
import { HaMetrics } from "../ops/haMetrics";
import { createBackend } from "../hypervisor/createBackend";
import { EXIT } from "../core/errors";

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
  const server = o.metricsPort !== undefined ? await metrics.serve(o.metricsPort) : undefined;
  if (server) log.info({ event: "metrics", port: server.port });
  const stop = () => manager.stop();
  process.once("SIGTERM", stop);
  process.once("SIGINT", stop);
  o.signal?.addEventListener("abort", stop);
  try {
    await manager.run();
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
