/**
 * ProtectedVM can start the companion scheduler with the stack (lab use): `pulumi up` starts it,
 * it snapshots the VM on its policy, and `pulumi destroy` stops it.
 */
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { ensureLab, LabState, removeLabVm, waitForConsole } from "../../lab/lab";
import { runCli, runId } from "../support/cli";
import { SnapshotRepository } from "../../repository/repository";
import { pidAlive } from "../../pulumi/providers/schedulerProcessImpl";
import { configFlags, exampleStackArgs, labExampleConfig } from "../../lab/exampleStack";

describe("scheduler started by the component", () => {
  let lab: LabState;
  const vmName = `pvsch-${runId()}`;
  const logFile = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "pv-sched-")), "scheduler.log");
  let base: string[] = [];

  beforeAll(async () => {
    lab = await ensureLab();
    base = exampleStackArgs(vmName);
  });

  afterAll(async () => {
    await runCli(["stack", "destroy", ...base]);
    await removeLabVm(lab, vmName);
  });

  test("up starts it, it snapshots on the policy, destroy stops it", async () => {
    const config = configFlags(labExampleConfig(lab, vmName, { minInterval: 3, maxInterval: 6, schedulerLog: logFile, onDestroy: "delete" }));
    const up = await runCli(["stack", "up", ...base, ...config]);
    expect(up.code).toBe(0);
    const res = await runCli(["stack", "resources", ...base]);
    const proc = res.json.resources.find((r: any) => r.type === "pulumi-nodejs:dynamic/protected-vm:SchedulerProcess");
    expect(pidAlive(proc.outputs.pid)).toBe(true);

    // Two snapshots by the scheduler (beyond the baseline), each logged as one JSON line.
    await waitForConsole(logFile, new RegExp(`"event":"snapshot","at":"[^"]+","vm":"${vmName}"[\\s\\S]*"event":"snapshot"`), 120_000);
    const lines = fs.readFileSync(logFile, "utf8").trim().split("\n").map((l) => JSON.parse(l));
    expect(lines.filter((l) => l.event === "snapshot" && l.vm === vmName).length).toBeGreaterThanOrEqual(2);
    expect(lines.every((l) => l.vm === undefined || l.vm === vmName)).toBe(true); // --vm: only this VM

    const destroy = await runCli(["stack", "destroy", ...base]);
    expect(destroy.code).toBe(0);
    expect(pidAlive(proc.outputs.pid)).toBe(false);
    // onDestroy "delete": the snapshots went with the VM.
    expect((await new SnapshotRepository(lab.repository).list(vmName)).filter((s) => s.complete)).toEqual([]);
  });
});
