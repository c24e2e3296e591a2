/**
 * Builds the Backend for a connection config. Plain data in, so the dynamic providers, the
 * scheduler and the CLI all construct backends the same way.
 */
import type { Backend, BackendKind } from "./backend";
import { LibvirtBackend } from "./libvirt/backend";

export interface LibvirtConnection {
  kind: "libvirt";
  /** Storage pool for disks and snapshot staging on every host. Default "default". */
  pool?: string;
}

export interface CloudStackConnection {
  kind: "cloudstack";
  endpoint: string;
  apiKey: string;
  secretKey: string;
  zoneId?: string;
  verifyTls?: boolean;
  timeoutMs?: number;
  asyncTimeoutMs?: number;
}

export type BackendConnection = LibvirtConnection | CloudStackConnection;

export function createBackend(conn: BackendConnection): Backend {
  if (conn.kind === "libvirt") return new LibvirtBackend({ pool: conn.pool });
  if (conn.kind === "cloudstack") {
    // Loaded lazily: libvirt-only users never load the HTTP client.
    const { CloudStackBackend } = require("./cloudstack/backend");
    const { CloudStackClient } = require("./cloudstack/client");
    const client = new CloudStackClient({
      endpoint: conn.endpoint,
      apiKey: conn.apiKey,
      secretKey: conn.secretKey,
      verifyTls: conn.verifyTls ?? true,
      timeoutMs: conn.timeoutMs,
      asyncTimeoutMs: conn.asyncTimeoutMs,
    });
    return new CloudStackBackend({ client, zoneId: conn.zoneId });
  }
  throw new Error(`unknown backend kind ${JSON.stringify((conn as { kind: unknown }).kind)}`);
}

export function backendKind(conn: BackendConnection): BackendKind {
  return conn.kind;
}
