/**
 * The logic of the `HaProcess` dynamic resource: runs `protected-vm agent` or `protected-vm
 * manager` as a detached local process on the machine that runs `pulumi up` (the lab, where the
 * "hosts" are local daemons); `pulumi destroy` stops it. On real hosts run them as systemd units
 * instead (README: High availability).
 */
import { spawn } from "child_process";
import * as fs from "fs";
import * as path from "path";
import type * as pulumi from "@pulumi/pulumi";
import { PACKAGE_ROOT } from "../../lib/packageRoot";
import { pidAlive } from "../../lib/pid";

export interface HaProcessInputs {
  role: "agent" | "manager";
  /** CLI flags after the role, e.g. ["--host", URI, "--etcd", URL]. */
  args: string[];
  /** Where its JSON lines go. */
  logFile: string;
}

export interface HaProcessOutputs extends HaProcessInputs {
  pid: number;
}

/** True when pid runs this role with exactly these flags (not a recycled pid of something else). */
export function isOurProcess(pid: number, inputs: HaProcessInputs): boolean {
  if (!pidAlive(pid)) return false;
  try {
    const argv = fs.readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").filter(Boolean);
    const i = argv.indexOf(inputs.role);
    return i > 0 && JSON.stringify(argv.slice(i + 1)) === JSON.stringify(inputs.args);
  } catch {
    return false;
  }
}

export async function check(_olds: unknown, news: HaProcessInputs): Promise<pulumi.dynamic.CheckResult> {
  const failures: pulumi.dynamic.CheckFailure[] = [];
  if (news.role !== "agent" && news.role !== "manager") failures.push({ property: "role", reason: `role must be "agent" or "manager", got ${JSON.stringify(news.role)}` });
  if (!Array.isArray(news.args) || news.args.some((a) => typeof a !== "string")) failures.push({ property: "args", reason: "args must be a list of strings" });
  if (!news.logFile) failures.push({ property: "logFile", reason: "logFile is required" });
  return { inputs: news, failures };
}

export async function create(inputs: HaProcessInputs): Promise<pulumi.dynamic.CreateResult> {
  fs.mkdirSync(path.dirname(inputs.logFile), { recursive: true });
  const out = fs.openSync(inputs.logFile, "a");
  const child = spawn(process.execPath, [path.join(PACKAGE_ROOT, "dist", "cli", "main.js"), inputs.role, ...inputs.args], {
    detached: true,
    stdio: ["ignore", out, out],
  });
  child.unref();
  fs.closeSync(out);
  if (!child.pid) throw new Error(`could not start protected-vm ${inputs.role}`);
  return { id: `${inputs.role}/${child.pid}`, outs: { ...inputs, pid: child.pid } };
}

export async function read(id: string, props: HaProcessOutputs): Promise<pulumi.dynamic.ReadResult> {
  // A process that died is gone: the next `pulumi up` starts a new one.
  return isOurProcess(props.pid, props) ? { id, props } : { id: "", props: {} };
}

export async function diff(_id: string, olds: HaProcessOutputs, news: HaProcessInputs): Promise<pulumi.dynamic.DiffResult> {
  const keys = ["role", "args", "logFile"] as const;
  const replaces = keys.filter((k) => JSON.stringify(olds[k] ?? null) !== JSON.stringify(news[k] ?? null));
  return { changes: replaces.length > 0, replaces, deleteBeforeReplace: true };
}

export async function remove(_id: string, props: HaProcessOutputs): Promise<void> {
  if (!isOurProcess(props.pid, props)) return;
  process.kill(props.pid, "SIGTERM");
  for (let i = 0; i < 100 && pidAlive(props.pid); i++) await new Promise((r) => setTimeout(r, 100));
  if (pidAlive(props.pid)) process.kill(props.pid, "SIGKILL");
}
