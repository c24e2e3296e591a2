/**
 * Simulates a hypervisor host dying on the lab: every QEMU of the host's user is killed with
 * SIGKILL (no shutdown, no save) and its libvirt daemon with it. `bash lab/lab.sh up` revives it.
 */
import type { LabHost } from "./lab";
import { run, ensureLab } from "./lab";

export async function failHost(host: LabHost): Promise<Date> {
  if (!host.user) throw new Error(`lab host ${host.name} has no user: cannot kill its processes`);
  const at = new Date();
  await run("pkill", ["-9", "-u", host.user, "-f", "qemu-system"]).catch(() => undefined);
  await run("pkill", ["-9", "-u", host.user, "libvirtd"]).catch(() => undefined);
  await run("pkill", ["-9", "-u", host.user, "virtqemud"]).catch(() => undefined);
  return at;
}

export async function reviveHosts(): Promise<void> {
  await ensureLab();
}
