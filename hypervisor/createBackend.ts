/**
 * Builds the Backend for a connection config. Plain data in, so the dynamic providers, the
 * scheduler and the CLI all construct backends the same way.
 */
import type { Backend } from "./backend";
import { LibvirtBackend } from "./libvirt/backend";
import type { CloudStackConfigInput } from "./cloudstack/config";

export interface LibvirtConnection {
  kind: "libvirt";
  /** Storage pool for disks and snapshot staging on every host. Default "default". */
  pool?: string;
}

/** CloudStack endpoint, keys (Pulumi secrets), zone and timeouts; unset fields come from CLOUDSTACK_* variables. */
export type CloudStackConnection = { kind: "cloudstack" } & CloudStackConfigInput;

export type BackendConnection = LibvirtConnection | CloudStackConnection;

export function createBackend(conn: BackendConnection): Backend {
  if (conn.kind === "libvirt") return new LibvirtBackend({ pool: conn.pool });
  if (conn.kind === "cloudstack") {
    // Loaded lazily: libvirt-only users never load the HTTP client. Built per call from plain
    // settings, so no client (and no key) is ever captured in a serialized provider.
    const { kind: _kind, ...config } = conn;
    const { CloudStackBackend } = require("./cloudstack/backend") as typeof import("./cloudstack/backend");
    return CloudStackBackend.fromConfig(config);
  }
  throw new Error(`unknown backend kind ${JSON.stringify((conn as { kind: unknown }).kind)}`);
}

