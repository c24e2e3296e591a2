/**
 * Opens a stack that runs an inline program through the Automation API. The CLI is the real
 * `pulumi` (bootstrapped); the Node.js SDK serves the language runtime for the inline program.
 */
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
  if (args.config) await stack.setAllConfig(args.config);
  return stack;
}
