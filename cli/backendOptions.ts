/**
 * The options every command that talks to hypervisors shares: --backend libvirt|cloudstack,
 * --pool (libvirt storage pool), --hosts PRIMARY,RECOVERY... CloudStack keys come from the
 * environment only (CLOUDSTACK_API_URL, CLOUDSTACK_API_KEY, CLOUDSTACK_SECRET_KEY,
 * CLOUDSTACK_ZONE), never from argv, where `ps` would show them.
 */
import { Command, Option } from "commander";
import type { Backend } from "../hypervisor/backend";
import type { BackendConnection } from "../hypervisor/createBackend";
import { CliContext, UsageError, collectList } from "./program";

export interface BackendOptions {
  backend: "libvirt" | "cloudstack";
  pool?: string;
  hosts: string[];
}

/** Adds --backend, --pool and the required --hosts to a command. */
export function addBackendOptions(cmd: Command, hostsHelp = "hosts to use, primary first, then recovery hosts (comma-separated, repeatable)"): Command {
  return cmd
    .addOption(new Option("--backend <kind>", "hypervisor backend").choices(["libvirt", "cloudstack"]).default("libvirt"))
    .option("--pool <name>", "libvirt storage pool for disks and restores")
    .requiredOption("--hosts <host,...>", hostsHelp, collectList);
}

export function connectionFrom(opts: BackendOptions, env: NodeJS.ProcessEnv): BackendConnection {
  if (opts.backend === "cloudstack") {
    const { loadCloudStackConfig } = require("../hypervisor/cloudstack/config") as typeof import("../hypervisor/cloudstack/config");
    return { kind: "cloudstack", ...loadCloudStackConfig({}, env) };
  }
  return { kind: "libvirt", pool: opts.pool };
}

/** The backend for these options; a CloudStack setting missing from the environment is a usage error (2). */
export function backendFrom(ctx: CliContext, opts: BackendOptions): Backend {
  try {
    return ctx.createBackend(connectionFrom(opts, ctx.env));
  } catch (e) {
    if ((e as Error).name === "CloudStackConfigError") throw new UsageError(`--backend cloudstack: ${(e as Error).message}`);
    throw e;
  }
}

export function hostsFrom(opts: BackendOptions): string[] {
  if (opts.hosts.length === 0) throw new UsageError("--hosts HOST[,HOST...] is required (primary first, then recovery hosts)");
  return opts.hosts;
}
