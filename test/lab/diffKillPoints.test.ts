/**
 * Issue 11 item 7: a snapshot process killed (SIGKILL or SIGTERM to its process group) at points
 * across its whole duration leaves nothing that the next snapshot does not repair: no incomplete
 * snapshot chosen, the VM back on `kept overlay <- base`, no staging files or pending markers,
 * and the next snapshot verifies and restores on host b.
 */
import { spawn } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { buildDomainXml } from "../../hypervisor/libvirt/domainXml";
import { ExecVirsh } from "../../hypervisor/libvirt/virsh";
import { restoreSnapshot, takeSnapshot } from "../../hypervisor/libvirt/snapshots";
import { diskChain } from "../../hypervisor/libvirt/diffSnapshot";
import { SnapshotRepository } from "../../repository/repository";
import { LabState, chownForHost, cleanupDomains, counters, ensureLab, guestCmdline, labAvailable, lastCounter, removeFiles, repoRoot, run, waitForConsole, waitForCounter } from "../../lab/lab";

const describeLab = labAvailable() && fs.existsSync(path.join(repoRoot(), "dist", "hypervisor", "libvirt", "snapshots.js")) ? describe : describe.skip;
const KILL_POINTS = 10;

describeLab("lab: killing the snapshot process at any point", () => {
  const virsh = new ExecVirsh();
  const tag = `${Date.now().toString(36)}${process.pid.toString(36)}`;
  const name = `pvt-dk-${tag}`;
  const files: string[] = [];
  let lab: LabState;

  beforeAll(async () => {
    lab = await ensureLab();
  });
  afterAll(async () => {
    if (!lab) return;
    await cleanupDomains(lab.hosts.a.uri, name, virsh);
    await cleanupDomains(lab.hosts.b.uri, name, virsh);
    for (const h of [lab.hosts.a, lab.hosts.b]) for (const f of fs.readdirSync(h.storageDir)) if (f.startsWith(name)) files.push(path.join(h.storageDir, f));
    removeFiles(...files);
  });

  test(`SIGKILL/SIGTERM to the group at ${KILL_POINTS} points: the next snapshot repairs, verifies and restores on b`, async () => {
    const A = lab.hosts.a;
    const B = lab.hosts.b;
    const repoDir = path.join(lab.repository, `dk-${tag}`);
    files.push(repoDir);
    const disk = path.join(A.storageDir, `${name}.qcow2`);
    const log = path.join(A.storageDir, `${name}.console.log`);
    await run("qemu-img", ["create", "-q", "-f", "qcow2", disk, "256M"]);
    await run("qemu-io", ["-f", "qcow2", "-c", "write -P 0x5a 0 16M", disk]);
    chownForHost(A, disk);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "pvt-dk-"));
    files.push(dir);
    const xml = buildDomainXml({ name, memoryMiB: 128, vcpus: 1, boot: { kernel: lab.guest.kernel, initrd: lab.guest.initrd, cmdline: guestCmdline({ mem: 32, rate: 1 }) } }, { diskPath: disk, consoleLog: log });
    fs.writeFileSync(path.join(dir, "d.xml"), xml);
    await virsh.run(A.uri, ["define", path.join(dir, "d.xml")]);
    await virsh.run(A.uri, ["start", name]);
    await waitForConsole(log, /^PVREADY /m, 180_000);

    const args = { uri: A.uri, name, pool: A.pool, includeMemory: true, repository: repoDir, live: "never" as const };
    const repairs: string[] = [];
    const takeHere = () => takeSnapshot(virsh, { ...args, log: (l) => repairs.push(l) });
    await takeHere(); // the first one reads the disk in full; the killed ones are incremental
    const t0 = Date.now();
    await takeHere();
    const duration = Date.now() - t0;

    const script = `require(${JSON.stringify(path.join(repoRoot(), "dist", "hypervisor", "libvirt", "snapshots.js"))}).takeSnapshot(new (require(${JSON.stringify(path.join(repoRoot(), "dist", "hypervisor", "libvirt", "virsh.js"))}).ExecVirsh)(), ${JSON.stringify(args)}).then(() => process.exit(0), (e) => { console.error(e); process.exit(1); })`;
    const repo = new SnapshotRepository(repoDir);
    const outcomes: string[] = [];
    for (let i = 0; i < KILL_POINTS; i++) {
      const signal = i % 2 === 0 ? "SIGKILL" : "SIGTERM";
      const at = Math.round(((i + 0.5) / KILL_POINTS) * duration);
      const child = spawn(process.execPath, ["-e", script], { detached: true, stdio: "ignore" });
      const exited = new Promise<number | null>((r) => child.on("exit", (code) => r(code)));
      await new Promise((r) => setTimeout(r, at));
      try {
        process.kill(-child.pid!, signal);
      } catch {
        /* already finished */
      }
      const code = await exited;
      if (code === 0) outcomes.push(`(the take at point ${i} finished before the kill)`);
      // The next snapshot, in this process: repairs whatever was left, then must be complete.
      repairs.length = 0;
      const rec = await takeHere();
      expect(rec.complete).toBe(true);
      expect((await repo.verify(name, rec.id)).ok).toBe(true);
      expect((await repo.newestComplete(name))?.id).toBe(rec.id);
      // The VM is on `kept overlay <- base`, nothing else of it in the pool, no pending markers.
      const chain = await diskChain(virsh, A.uri, name, "vda");
      expect(chain.chain.length).toBe(2);
      expect(chain.base).toBe(disk);
      const pool = fs.readdirSync(A.storageDir).filter((f) => f.startsWith(`${name}.pvsnap-`));
      expect(pool).toEqual([path.basename(chain.top)]);
      expect((await repo.list(name)).filter((r) => !r.complete)).toEqual([]);
      outcomes.push(`${signal}@${at}ms exit=${code} repairs=[${repairs.join(" / ")}]`);
    }
    console.log(`take ${duration} ms; kill points:\n  ${outcomes.join("\n  ")}`);

    const last = (await repo.newestComplete(name))!;
    const lastA = lastCounter(log)!;
    await virsh.run(A.uri, ["destroy", name]);
    await restoreSnapshot(virsh, { snapshot: last, uri: B.uri, pool: B.pool, repository: repoDir });
    const logB = path.join(B.storageDir, `${name}.console.log`);
    await waitForConsole(logB, /^PVCOUNT \d+ /m, 120_000);
    const firstB = counters(logB)[0].n;
    expect(firstB).toBeGreaterThan(1);
    expect(firstB).toBeLessThanOrEqual(lastA + 1);
    await waitForCounter(logB, firstB + 2, 60_000);
    expect(fs.readdirSync(B.storageDir).filter((f) => f.startsWith(name)).sort()).toEqual([`${name}.console.log`, `${name}.qcow2`]);
  });
});
