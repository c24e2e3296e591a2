/**
 * Recovery drill on the lab: a ProtectedVM deployed with `stack up` runs on host A; the drill
 * restores its newest snapshot on host B under another name, checks it, reports RPO/RTO and
 * removes it, while production keeps running untouched. Then a drill killed mid-restore is
 * cleaned up by `drill --cleanup` with nothing left on either host.
 */
import { spawn } from "child_process";
import * as fs from "fs";
import * as path from "path";
import { LibvirtBackend } from "../../hypervisor/libvirt/backend";
import { ExecVirsh } from "../../hypervisor/libvirt/virsh";
import { PACKAGE_ROOT } from "../../lib/packageRoot";
import { runCli, runId } from "../support/cli";
import { LabState, cleanupDomains, ensureLab, labAvailable, lastCounter, waitForCounter } from "../../lab/lab";
import { configFlags, labExampleConfig } from "../../lab/exampleStack";

const describeLab = labAvailable() ? describe : describe.skip;
const PROGRAM = path.join(PACKAGE_ROOT, "dist", "examples", "protected-vm", "index.js");
const MAIN = path.join(PACKAGE_ROOT, "dist", "cli", "main.js");
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describeLab("lab: recovery drill", () => {
  const id = runId();
  const vm = `pvt-dr-${id}`;
  const stackArgs = ["--program", PROGRAM, "--project", "drill-lab", "--stack", `drill-${id}`, "--quiet", "--json"];
  const virsh = new ExecVirsh();
  const backend = new LibvirtBackend({ pool: "pvlab", virsh });
  let lab: LabState;
  let hostsFlag: string;
  let consoleA: string;

  const drillDomains = async (uri: string) =>
    (await virsh.run(uri, ["list", "--all", "--name"])).stdout.split("\n").map((s) => s.trim()).filter((s) => s.includes(`${vm}-drill-`));
  const drillFiles = () =>
    [lab.hosts.a.storageDir, lab.hosts.b.storageDir, path.join(lab.repository, "vms")].flatMap((d) =>
      (fs.existsSync(d) ? fs.readdirSync(d) : []).filter((f) => f.includes(`${vm}-drill-`)).map((f) => path.join(d, f)),
    );

  beforeAll(async () => {
    lab = await ensureLab();
    hostsFlag = `${lab.hosts.a.uri},${lab.hosts.b.uri}`;
    consoleA = path.join(lab.hosts.a.storageDir, `${vm}.console.log`);
    const up = await runCli([
      "stack", "up", ...stackArgs,
      ...configFlags(labExampleConfig(lab, vm, { memoryMiB: 128, onDestroy: "delete", minInterval: 10, maxInterval: 60 })),
    ]);
    if (up.code !== 0) throw new Error(`stack up failed (${up.code}): ${up.stderr}`);
    // The baseline snapshot was taken at boot; take one while the guest counts, as the scheduler would.
    await waitForCounter(consoleA, 3, 120_000);
    const sched = await runCli(["scheduler", "--vm", vm, "--hosts", hostsFlag, "--pool", "pvlab", "--max-snapshots", "1", "--cpu-sample-ms", "200"]);
    if (sched.code !== 0) throw new Error(`scheduler failed: ${sched.stderr}`);
  });

  afterAll(async () => {
    if (!lab) return;
    await runCli(["drill", "--cleanup", vm, "--hosts", hostsFlag, "--repository", lab.repository, "--pool", "pvlab", "--force"]).catch(() => undefined);
    const down = await runCli(["stack", "destroy", ...stackArgs]);
    if (down.code !== 0) console.error(`stack destroy failed: ${down.stderr}`);
    await cleanupDomains(lab.hosts.a.uri, vm, virsh);
    await cleanupDomains(lab.hosts.b.uri, vm, virsh);
  });

  test("the drill restores the newest snapshot on B under another name, reports RPO/RTO, leaves production alone and nothing behind", async () => {
    const before = await backend.findVm(vm, [lab.hosts.a.uri]);
    expect(before?.state).toBe("running");
    const counterBefore = lastCounter(consoleA)!;

    const t0 = Date.now();
    const r = await runCli(["drill", vm, "--hosts", hostsFlag, "--repository", lab.repository, "--pool", "pvlab", "--console-check", "--max-rpo-seconds", "600", "--json"]);
    console.log(`drill: ${Date.now() - t0} ms\n${r.stderr}`);
    expect(r.json).toBeDefined();
    const report = r.json;
    expect(report.checks.filter((c: any) => !c.ok)).toEqual([]);
    expect(r.code).toBe(0);
    expect(report.ok).toBe(true);
    expect(report.drillName).toMatch(new RegExp(`^${vm}-drill-[a-z0-9]+$`));
    expect(report.host).toBe(lab.hosts.b.uri);
    expect(report.rpoSeconds).toBeGreaterThanOrEqual(0);
    expect(report.rpoSeconds).toBeLessThanOrEqual(600);
    expect(report.rtoSeconds).toBeGreaterThan(0);
    expect(report.path).toBe("warm");
    // The copy continued from the snapshot (the console probe: first counter > 1, increasing).
    const guest = report.checks.find((c: any) => c.name === "guest-progress");
    expect(guest.ok).toBe(true);
    expect(guest.detail).toMatch(/continued from the snapshot/);

    // Production: same instance, same host, still running and still counting.
    const after = await backend.findVm(vm, [lab.hosts.a.uri, lab.hosts.b.uri]);
    expect(after?.host).toBe(lab.hosts.a.uri);
    expect(after?.id).toBe(before!.id);
    expect(after?.state).toBe("running");
    await waitForCounter(consoleA, counterBefore + 2, 30_000);

    // Nothing of the copy is left.
    expect(await drillDomains(lab.hosts.a.uri)).toEqual([]);
    expect(await drillDomains(lab.hosts.b.uri)).toEqual([]);
    expect(drillFiles()).toEqual([]);

    // Text output for humans, same exit code contract.
    const text = await runCli(["drill", vm, "--hosts", hostsFlag, "--repository", lab.repository, "--pool", "pvlab", "--max-rpo-seconds", "600"]);
    expect(text.code).toBe(0);
    expect(text.stdout).toMatch(/^drill PASSED: /);
    expect(text.stdout).toMatch(/RPO [\d.]+ s \(limit 600 s\), RTO [\d.]+ s/);
  });

  test("a drill whose snapshot is older than allowed fails with exit 4 and still cleans up", async () => {
    const r = await runCli(["drill", vm, "--hosts", hostsFlag, "--repository", lab.repository, "--pool", "pvlab", "--max-rpo-seconds", "0.001", "--json"]);
    expect(r.code).toBe(4);
    expect(r.json.ok).toBe(false);
    expect(r.json.checks.find((c: any) => c.name === "snapshot-recent").ok).toBe(false);
    expect(await drillDomains(lab.hosts.b.uri)).toEqual([]);
    expect(drillFiles()).toEqual([]);
  });

  test("a drill killed mid-restore is removed by drill --cleanup: no -drill- domain or file on either host", async () => {
    const child = spawn(process.execPath, [MAIN, "drill", vm, "--hosts", hostsFlag, "--repository", lab.repository, "--pool", "pvlab", "--max-rpo-seconds", "600"], {
      cwd: PACKAGE_ROOT,
      detached: true, // its own process group: kill it with its virsh children, as a CI runner cancelling a job does
      stdio: ["ignore", "ignore", "pipe"],
    });
    let stderr = "";
    child.stderr!.on("data", (d) => (stderr += d));
    const exited = new Promise<number | null>((r) => child.on("exit", (code) => r(code)));
    // Wait until the restore is under way on B: its staging files are being written.
    const deadline = Date.now() + 60_000;
    let staging: string | undefined;
    while (!staging && Date.now() < deadline) {
      staging = fs.readdirSync(lab.hosts.b.storageDir).find((f) => f.startsWith(`${vm}-drill-`) && f.includes(".pvrestore-"));
      if (!staging) await sleep(10);
    }
    process.kill(-child.pid!, "SIGKILL");
    expect(await exited).toBeNull();
    expect(staging).toBeDefined();
    console.log(`killed the drill during restore (saw ${staging}); its log:\n${stderr}`);
    // Something was left behind (that is the point of --cleanup).
    expect(drillFiles().length + (await drillDomains(lab.hosts.b.uri)).length).toBeGreaterThan(0);

    const c = await runCli(["drill", "--cleanup", vm, "--hosts", hostsFlag, "--repository", lab.repository, "--pool", "pvlab", "--json"]);
    expect(c.code).toBe(0);
    expect(c.json.remaining).toEqual([]);
    await sleep(2000);
    expect(await drillDomains(lab.hosts.a.uri)).toEqual([]);
    expect(await drillDomains(lab.hosts.b.uri)).toEqual([]);
    expect(drillFiles()).toEqual([]);
    // Production was never involved.
    expect((await backend.findVm(vm, [lab.hosts.a.uri]))?.state).toBe("running");
  });
});
