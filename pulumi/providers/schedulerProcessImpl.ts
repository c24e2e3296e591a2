/**
 * The logic of the `SchedulerProcess` dynamic resource: runs `protected-vm scheduler` for one
 * VM as a detached process on the machine that runs `pulumi up` (the lab's management host).
 * For real deployments run the scheduler as a service instead (README: systemd unit).
 */
import { spawn } from "child_process";
import * as fs from "fs";
import * as path from "path";
import type * as pulumi from "@pulumi/pulumi";
import { PACKAGE_ROOT } from "../../lib/packageRoot";
import { pidAlive } from "../../lib/pid";

export interface SchedulerProcessInputs {
  vmName: string;
  hosts: string[];
  pool?: string;
  /** Where the scheduler's JSON lines go. */
  logFile: string;
  statusFile?: string;
}

export interface SchedulerProcessOutputs extends SchedulerProcessInputs {
  pid: number;
}

export { pidAlive };

/** True when pid is our scheduler for this VM (not a recycled pid of something else). */
function isOurScheduler(pid: number, vmName: string): boolean {
  if (!pidAlive(pid)) return false;
  try {
    const cmdline = fs.readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0");
    return cmdline.includes("scheduler") && cmdline.includes(vmName);
  } catch {
    return false;
  }
}

export async function create(inputs: SchedulerProcessInputs): Promise<pulumi.dynamic.CreateResult> {
  fs.mkdirSync(path.dirname(inputs.logFile), { recursive: true });
  const out = fs.openSync(inputs.logFile, "a");
  const args = [path.join(PACKAGE_ROOT, "dist", "cli", "main.js"), "scheduler", "--vm", inputs.vmName, "--hosts", inputs.hosts.join(",")];
  if (inputs.pool) args.push("--pool", inputs.pool);
  if (inputs.statusFile) args.push("--status-file", inputs.statusFile);
  const child = spawn(process.execPath, args, { detached: true, stdio: ["ignore", out, out] });
  child.unref();
  fs.closeSync(out);
  if (!child.pid) throw new Error(`could not start the scheduler for ${inputs.vmName}`);
  return { id: `${inputs.vmName}/scheduler`, outs: { ...inputs, pid: child.pid } };
}

export async function read(id: string, props: SchedulerProcessOutputs): Promise<pulumi.dynamic.ReadResult> {
  // A scheduler that died is gone: the next `pulumi up` starts a new one.
  return isOurScheduler(props.pid, props.vmName) ? { id, props } : { id: "", props: {} };
}

export async function diff(_id: string, olds: SchedulerProcessOutputs, news: SchedulerProcessInputs): Promise<pulumi.dynamic.DiffResult> {
  const keys = ["vmName", "hosts", "pool", "logFile", "statusFile"] as const;
  const replaces = keys.filter((k) => JSON.stringify(olds[k] ?? null) !== JSON.stringify(news[k] ?? null));
  return { changes: replaces.length > 0, replaces, deleteBeforeReplace: true };
}

export async function remove(_id: string, props: SchedulerProcessOutputs): Promise<void> {
  if (!isOurScheduler(props.pid, props.vmName)) return;
  process.kill(props.pid, "SIGTERM");
  for (let i = 0; i < 100 && pidAlive(props.pid); i++) await new Promise((r) => setTimeout(r, 100));
  if (pidAlive(props.pid)) process.kill(props.pid, "SIGKILL");
}
