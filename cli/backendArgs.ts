/** Backend and hosts from CLI flags: --backend libvirt|cloudstack, --pool, --hosts a,b. */
import type { Backend } from "../hypervisor/backend";
import { BackendConnection, createBackend } from "../hypervisor/createBackend";
import { ParsedArgs, UsageError, flag, flagList } from "./args";

export function connectionFromArgs(args: ParsedArgs): BackendConnection {
  const kind = flag(args, "backend") ?? "libvirt";
  if (kind === "libvirt") return { kind, pool: flag(args, "pool") };
  if (kind === "cloudstack") {
    // Keys come from the environment only, never from argv (visible in `ps`).
    const { loadCloudStackConfig } = require("../hypervisor/cloudstack/config") as typeof import("../hypervisor/cloudstack/config");
    return { kind, ...loadCloudStackConfig({}, process.env) };
  }
  throw new UsageError(`--backend must be libvirt or cloudstack, got ${JSON.stringify(kind)}`);
}

export function backendFromArgs(args: ParsedArgs): Backend {
  return createBackend(connectionFromArgs(args));
}

export function hostsFromArgs(args: ParsedArgs): string[] {
  const hosts = flagList(args, "hosts");
  if (hosts.length === 0) throw new UsageError("--hosts HOST[,HOST...] is required (primary first, then recovery hosts)");
  return hosts;
}
