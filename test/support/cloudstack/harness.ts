/** Shared test setup: a loopback CloudStack plus a client/backend with fast polling and captured logs. */
import { FakeCloudStack, FakeCloudStackOptions } from "../cloudstackServer";
import { CloudStackClient, CloudStackClientOptions } from "../../../hypervisor/cloudstack/client";
import { CloudStackBackend } from "../../../hypervisor/cloudstack/backend";

export interface CapturedLog {
  lines: string[];
  logger: { debug(m: string): void; info(m: string): void; warn(m: string): void };
}

export function captureLog(): CapturedLog {
  const lines: string[] = [];
  return {
    lines,
    logger: {
      debug: (m) => lines.push(`debug ${m}`),
      info: (m) => lines.push(`info ${m}`),
      warn: (m) => lines.push(`warn ${m}`),
    },
  };
}

export const FAST: Partial<CloudStackClientOptions> = {
  pollIntervalMs: 5,
  maxPollIntervalMs: 20,
  asyncTimeoutMs: 10_000,
  timeoutMs: 5_000,
  retry: { retries: 3, minTimeoutMs: 5, maxTimeoutMs: 20, factor: 2 },
};

export async function startCloud(opts: FakeCloudStackOptions = {}): Promise<FakeCloudStack> {
  const cs = new FakeCloudStack(opts);
  await cs.start();
  return cs;
}

export function clientFor(cs: FakeCloudStack, log?: CapturedLog, over: Partial<CloudStackClientOptions> = {}): CloudStackClient {
  return new CloudStackClient({ endpoint: cs.url, apiKey: cs.apiKey, secretKey: cs.secretKey, ...FAST, logger: log?.logger, ...over });
}

export function backendFor(cs: FakeCloudStack, log?: CapturedLog, over: Partial<CloudStackClientOptions> = {}): CloudStackBackend {
  return new CloudStackBackend({ endpoint: cs.url, apiKey: cs.apiKey, secretKey: cs.secretKey, ...FAST, logger: log?.logger, ...over, zone: cs.zoneId });
}
