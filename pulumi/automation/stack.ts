/**
 * Opens a stack that runs an inline program through the Automation API. The CLI is the real
 * `pulumi` (bootstrapped); the Node.js SDK serves the language runtime for the inline program.
 */
import { spawn } from "child_process";
import * as fs from "fs";
import * as path from "path";
import { LocalWorkspace, PulumiCommand, Stack, PulumiFn, ConfigMap } from "@pulumi/pulumi/automation";
import { PACKAGE_ROOT, pulumiEnv } from "./pulumiEnv";

// The CLI builds stack config without importing @pulumi/* itself (only pulumi/ does).
export type { ConfigMap };

export interface OpenStackArgs {
  projectName: string;
  stackName: string;
  program: PulumiFn;
  /** Stack config; secret values are encrypted in state. */
  config?: ConfigMap;
}

export async function openStack(args: OpenStackArgs): Promise<Stack> {
  const { binDir, env } = pulumiEnv();
  // A work dir inside the package, so plugins started there resolve our node_modules.
  const workDir = path.join(PACKAGE_ROOT, ".cache", "workspaces", args.projectName);
  fs.mkdirSync(workDir, { recursive: true });
  const pulumiCommand = await PulumiCommand.get({ root: path.dirname(binDir) });
  const stack = await LocalWorkspace.createOrSelectStack(
    { projectName: args.projectName, stackName: args.stackName, program: args.program },
    {
      workDir,
      pulumiCommand,
      envVars: env,
      projectSettings: { name: args.projectName, runtime: "nodejs", backend: { url: env.PULUMI_BACKEND_URL } },
    },
  );
  if (args.config) {
    const plain: ConfigMap = {};
    for (const [key, v] of Object.entries(args.config)) {
      if (v.secret) await setSecretConfig(path.join(binDir, "pulumi"), workDir, { ...process.env, ...env }, stack.name, key, v.value);
      else plain[key] = v;
    }
    if (Object.keys(plain).length) await stack.setAllConfig(plain);
  }
  return stack;
}

/**
 * Store one secret config value, encrypted, through `pulumi config set --secret KEY` reading the
 * value from stdin. The Automation API's setConfig/setAllConfig run `pulumi config set[-all]
 * --secret KEY=VALUE`, which puts the value in the process arguments, readable by every user
 * with `ps` (the issue measured it in 190 of 190 samples during a `stack up`).
 */
export function setSecretConfig(pulumiBin: string, workDir: string, env: NodeJS.ProcessEnv, stackName: string, key: string, value: string): Promise<void> {
  return new Promise((resolve, reject) => {
    // --raw: keep the value byte for byte (stdin values are otherwise trimmed of trailing newlines).
    const child = spawn(pulumiBin, ["config", "set", "--secret", "--raw", "--stack", stackName, "--non-interactive", "--", key], { cwd: workDir, env, stdio: ["pipe", "ignore", "pipe"] });
    let stderr = "";
    child.stderr.on("data", (d) => (stderr += String(d)));
    child.on("error", reject);
    child.on("close", (code) => (code === 0 ? resolve() : reject(new Error(`pulumi config set --secret ${key} failed (exit ${code}): ${stderr.trim()}`))));
    child.stdin.end(value);
  });
}
