/**
 * What `agent` and `manager` share as long-running processes: serve /metrics if asked, run until
 * SIGTERM/SIGINT (or the test's abort signal) stops the loop, then close the metrics server and
 * the etcd connection. Exit 0 when stopped, 1 when the loop failed.
 */
import type { Logger } from "pino";
import { EXIT } from "../core/errors";
import type { HaMetrics } from "../ops/haMetrics";

export async function runUntilStopped(
  loop: { run(): Promise<void>; stop(): void },
  deps: { log: Logger; metrics: HaMetrics; metricsPort?: number; coordination: { close(): Promise<void> }; signal?: AbortSignal },
): Promise<number> {
  const server = deps.metricsPort !== undefined ? await deps.metrics.serve(deps.metricsPort) : undefined;
  if (server) deps.log.info({ event: "metrics", port: server.port });
  const stop = () => loop.stop();
  process.once("SIGTERM", stop);
  process.once("SIGINT", stop);
  deps.signal?.addEventListener("abort", stop);
  try {
    await loop.run();
    return EXIT.ok;
  } catch (e) {
    deps.log.error({ error: (e as Error).message });
    return EXIT.failed;
  } finally {
    process.off("SIGTERM", stop);
    process.off("SIGINT", stop);
    await server?.close();
    await deps.coordination.close();
  }
}
