/**
 * Simulates a hypervisor host dying on the lab: every QEMU of the host's user is killed with
 * SIGKILL (no shutdown, no save) and its libvirt daemon with it. `bash lab/lab.sh up` revives it.
 */
import type { LabHost } from "./lab";
import * as path from "path";
import { run, ensureLab, repoRoot } from "./lab";

export async function failHost(host: LabHost): Promise<Date> {
  if (!host.user) throw new Error(`lab host ${host.name} has no user: cannot kill its processes`);
  const at = new Date();
  // Only this checkout's lab: another checkout's lab may run under the same users.
  const out = await run("bash", [path.join(repoRoot(), "lab", "lab.sh"), "pids", host.name]).catch(() => "");
  for (const pid of out.split(/\s+/).filter(Boolean).map(Number)) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      /* already gone */
    }
  }
  return at;
}

export async function reviveHosts(): Promise<void> {
  await ensureLab();
}
