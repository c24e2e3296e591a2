/** The example stack (examples/protected-vm) on the lab, as the lab tests and the demo run it. */
import type { LabState } from "./lab";

/** CLI arguments that select the example program and a stack of it. */
export function exampleStackArgs(stack: string): string[] {
  return ["--program", "dist/examples/protected-vm/index.js", "--project", "protected-vm-example", "--stack", stack, "--quiet", "--json"];
}

/** The example's config for one VM on lab host a with host b for recovery, plus `extra` keys. */
export function labExampleConfig(lab: LabState, vmName: string, extra: Record<string, string | number> = {}): Record<string, string> {
  const base: Record<string, string | number> = {
    primaryHost: lab.hosts.a.uri,
    recoveryHost: lab.hosts.b.uri,
    repository: lab.repository,
    kernel: lab.guest.kernel,
    initrd: lab.guest.initrd,
    pool: lab.hosts.a.pool,
    vmName,
    ...extra,
  };
  return Object.fromEntries(Object.entries(base).map(([k, v]) => [k, String(v)]));
}

/** `--config key=value` flags for the CLI. */
export function configFlags(config: Record<string, string>): string[] {
  return Object.entries(config).flatMap(([k, v]) => ["--config", `${k}=${v}`]);
}
