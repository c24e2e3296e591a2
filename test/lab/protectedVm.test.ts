/**
 * The product's acceptance scenario on the lab, all through the real CLI and a real `pulumi up`:
 * up a ProtectedVM on host A -> the guest boots -> the scheduler takes 3 snapshots and
 * retention keeps exactly keepLast -> host A dies -> `recover` resumes the VM on host B from
 * the newest snapshot -> the guest's counter continues -> `pulumi refresh` shows host B ->
 * `pulumi destroy` leaves no domain behind, snapshots kept as the policy says.
 */
import * as fs from "fs";
import * as path from "path";
import { ensureLab, LabState, removeLabVm, cleanupDomains, counters, waitForConsole } from "../../lab/lab";
import { failHost, reviveHosts } from "../../lab/hostFailure";
import { runCli, runId } from "../support/cli";
import { SnapshotRepository } from "../../repository/repository";
import { configFlags, exampleStackArgs, labExampleConfig } from "../../lab/exampleStack";

const KEEP_LAST = 2;

describe("ProtectedVM on the libvirt lab", () => {
  let lab: LabState;
  const vmName = `pvit-${runId()}`;
  const stack = vmName;
  let base: string[] = [];
  let destroyed = false;

  beforeAll(async () => {
    lab = await ensureLab();
    base = exampleStackArgs(stack);
  });

  afterAll(async () => {
    await reviveHosts();
    if (!destroyed) await runCli(["stack", "destroy", ...base]);
    await removeLabVm(lab, vmName);
    await new SnapshotRepository(lab.repository).gc({ waitMs: 30_000 }).catch(() => undefined);
  });

  test("snapshots, host failure, recovery with memory, refresh, destroy", async () => {
    const A = lab.hosts.a, B = lab.hosts.b;
    const config = configFlags(labExampleConfig(lab, vmName, { keepLast: KEEP_LAST, minInterval: 3, maxInterval: 10 }));

    let t = Date.now();
    const up = await runCli(["stack", "up", ...base, ...config]);
    expect(up.code).toBe(0);
    console.log(`pulumi up: ${Date.now() - t} ms`);
    expect(up.json.outputs.currentHost).toBe(A.uri);
    expect(up.json.outputs.newestSnapshotId).toMatch(/^\d{8}T/); // the baseline snapshot

    const consoleA = path.join(A.storageDir, `${vmName}.console.log`);
    await waitForConsole(consoleA, /PVCOUNT 2 /, 120_000);

    t = Date.now();
    const sched = await runCli(["scheduler", "--vm", vmName, "--hosts", `${A.uri},${B.uri}`, "--pool", A.pool, "--max-snapshots", "3", "--discover-every-ms", "2000"]);
    expect(sched.code).toBe(0);
    console.log(`scheduler, 3 snapshots: ${Date.now() - t} ms`);
    const events = sched.stdout.trim().split("\n").map((l) => JSON.parse(l));
    const snaps = events.filter((e) => e.event === "snapshot" && e.vm === vmName);
    expect(snaps).toHaveLength(3);
    for (const s of snaps) {
      expect(s.bytes).toBeGreaterThan(100 * 1024 * 1024 * 0.5); // memory of a 128 MiB guest + disk
      // The guest rewrites 1 MiB/s: slow enough for live snapshots (policy liveSnapshot: auto).
      expect(s.live).toBe(true);
    }

    // Retention: exactly keepLast complete snapshots remain, each verifying, the newest is the last taken.
    const repo = new SnapshotRepository(lab.repository);
    const kept = (await repo.list(vmName)).filter((s) => s.complete);
    expect(kept.map((s) => s.id)).toEqual(snaps.slice(-KEEP_LAST).reverse().map((s) => s.id));
    for (const s of kept) expect((await repo.verify(vmName, s.id)).ok).toBe(true);
    for (const s of kept) expect(fs.existsSync(s.location)).toBe(true);
    const newest = kept[0];

    // Host A dies: its QEMU and its daemon are killed.
    const lastOnA = counters(consoleA).pop()!.n;
    const failedAt = await failHost(A);

    const rec = await runCli(["recover", vmName, "--hosts", `${A.uri},${B.uri}`, "--repository", lab.repository, "--pool", B.pool, "--json"]);
    expect(rec.stderr).not.toMatch(/Error/);
    expect(rec.code).toBe(0);
    expect(rec.json.to).toBe(B.uri);
    expect(rec.json.snapshotId).toBe(newest.id);
    expect(rec.json.path).toBe("warm");

    // The guest resumed from the snapshot: its counter continues, it did not reboot (which restarts at 1).
    const consoleB = path.join(B.storageDir, `${vmName}.console.log`);
    const m = await waitForConsole(consoleB, /PVCOUNT (\d+) /, 60_000);
    const rtoMs = Date.now() - failedAt.getTime();
    const firstOnB = Number(m[1]);
    console.log(`last counter on A ${lastOnA}, first on B ${firstOnB}; RPO ${rec.json.rpoSeconds.toFixed(1)} s, RTO ${(rtoMs / 1000).toFixed(1)} s`);
    expect(firstOnB).toBeGreaterThan(2);
    expect(firstOnB).toBeLessThanOrEqual(lastOnA + 1);
    await waitForConsole(consoleB, new RegExp(`PVCOUNT ${firstOnB + 2} `), 30_000);
    expect(fs.readFileSync(consoleB, "utf8")).not.toMatch(/PVCOUNT 1 /);

    // Running recover again is safe: it sees the VM on B and does nothing.
    const again = await runCli(["recover", vmName, "--hosts", `${A.uri},${B.uri}`, "--repository", lab.repository, "--pool", B.pool, "--json"]);
    expect(again.code).toBe(0);
    expect(again.json.alreadyRecovered).toBe(true);

    // Host A comes back (with a stale, stopped definition of the VM); refresh finds the VM on B.
    await reviveHosts();
    const refresh = await runCli(["stack", "refresh", ...base]);
    expect(refresh.code).toBe(0);
    // The stack outputs follow too (refresh runs the program), not only the Domain's state.
    expect(refresh.json.outputs.currentHost).toBe(B.uri);
    expect(refresh.json.outputs.newestSnapshotId).not.toBe(up.json.outputs.newestSnapshotId);
    const res = await runCli(["stack", "resources", ...base]);
    const domain = res.json.resources.find((r: any) => r.type === "pulumi-nodejs:dynamic/protected-vm:Domain");
    expect(domain.outputs.currentHost).toBe(B.uri);
    expect(domain.outputs.state).toBe("running");

    t = Date.now();
    const destroy = await runCli(["stack", "destroy", ...base]);
    expect(destroy.code).toBe(0);
    destroyed = true;
    console.log(`pulumi destroy: ${Date.now() - t} ms`);
    for (const h of [A, B]) {
      const left = await cleanupDomains(h.uri, vmName);
      expect(left).toEqual([]);
      expect(fs.readdirSync(h.storageDir).filter((f) => f.startsWith(vmName))).toEqual([]);
    }
    // onDestroy "keep": the snapshots outlive the VM.
    expect((await repo.list(vmName)).filter((s) => s.complete).length).toBe(KEEP_LAST);
  });
});
