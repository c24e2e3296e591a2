/**
 * The environment every Pulumi operation of this project runs in: the bootstrapped CLI and
 * plugin launchers first on PATH, a local file backend, update checks off. No Pulumi Cloud.
 */
import { execFileSync } from "child_process";
import * as fs from "fs";
import * as path from "path";

import { PACKAGE_ROOT } from "../../lib/packageRoot";

export { PACKAGE_ROOT };

export interface PulumiEnv {
  /** Directory holding `pulumi` and the plugin launchers. */
  binDir: string;
  /** Environment variables for the CLI and the engine's plugins. */
  env: Record<string, string>;
  stateDir: string;
}

let cached: PulumiEnv | undefined;

/**
 * Runs scripts/bootstrap-pulumi.sh once per process (it builds the pinned CLI on first use and is
 * a no-op after), then returns the environment. PROTECTED_VM_STATE_DIR selects the state folder,
 * PULUMI_CONFIG_PASSPHRASE the secrets passphrase.
 */
export function pulumiEnv(): PulumiEnv {
  if (cached) return cached;
  const script = path.join(PACKAGE_ROOT, "scripts", "bootstrap-pulumi.sh");
  const out = execFileSync("bash", [script], { encoding: "utf8", stdio: ["ignore", "pipe", "inherit"] });
  const binDir = out.trim().split("\n").pop()!.trim();
  const stateDir = path.resolve(process.env.PROTECTED_VM_STATE_DIR || path.join(PACKAGE_ROOT, ".pulumi-state"));
  fs.mkdirSync(stateDir, { recursive: true });
  const env: Record<string, string> = {
    PATH: `${binDir}:${process.env.PATH ?? ""}`,
    PULUMI_BACKEND_URL: `file://${stateDir}`,
    PULUMI_SKIP_UPDATE_CHECK: "true",
    PULUMI_HOME: process.env.PULUMI_HOME || path.join(PACKAGE_ROOT, ".cache", "pulumi-home"),
    // Local lab default only; real deployments set their own passphrase (or another secrets provider).
    PULUMI_CONFIG_PASSPHRASE: process.env.PULUMI_CONFIG_PASSPHRASE ?? "protected-vm-local-lab",
  };
  // The engine's plugins (our dynamic providers) inherit this process's PATH.
  process.env.PATH = env.PATH;
  cached = { binDir, env, stateDir };
  return cached;
}
