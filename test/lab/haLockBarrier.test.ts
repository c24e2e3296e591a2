/**
 * The storage-level barrier: with libvirt's lock manager (virtlockd, lab/lab.sh with
 * PVLAB_LOCK_MANAGER=lockd), a second QEMU of a disk cannot start on host b while host a's copy
 * runs, and starts once a's copy is gone. The disk sits on the shared repository at one path, as
 * shared storage would hold it. Two layers refuse the second copy: QEMU's own image lock and
 * virtlockd's lease in the shared lockspace (held by a's virtlockd, checked with lslocks).
 *
 * Lab-only detail: the two hosts are two unix users, and virtlockd creates lock files 0600, so
 * the test creates the disk's lock file 0666 first (on real hosts every daemon runs as root).
 * The lab is restarted with lockd for this file and restarted plain afterwards.
 */
import * as crypto from "crypto";
import * as fs from "fs";
import * as path from "path";
import { buildDomainXml } from "../../hypervisor/libvirt/domainXml";
import { ExecVirsh } from "../../hypervisor/libvirt/virsh";
import { LabState, labAvailable, readLabState, repoRoot, run } from "../../lab/lab";
import { runId } from "../support/cli";

const describeLab = labAvailable() ? describe : describe.skip;
const labSh = (args: string[], env: Record<string, string> = {}) =>
  new Promise<void>((resolve, reject) => {
    const { execFile } = require("child_process") as typeof import("child_process");
    execFile("bash", [path.join(repoRoot(), "lab", "lab.sh"), ...args], { env: { ...process.env, ...env }, timeout: 600_000 }, (err, _o, stderr) =>
      err ? reject(new Error(`lab.sh ${args.join(" ")}: ${stderr}`)) : resolve(),
    );
  });

describeLab("lab: storage-level barrier (virtlockd)", () => {
  let lab: LabState;
  const virsh = new ExecVirsh();
  const name = `pvlock-${runId()}`;
  let disk = "";

  beforeAll(async () => {
    await labSh(["down"]);
    await labSh(["up"], { PVLAB_LOCK_MANAGER: "lockd" });
    lab = readLabState();
  }, 600_000);

  afterAll(async () => {
    if (lab) {
      for (const h of [lab.hosts.a, lab.hosts.b]) {
        await virsh.run(h.uri, ["destroy", name]).catch(() => undefined);
        await virsh.run(h.uri, ["undefine", name]).catch(() => undefined);
      }
    }
    if (disk) fs.rmSync(disk, { force: true });
    await labSh(["down"]);
    await labSh(["up"]);
  }, 600_000);

  test("a second QEMU of the same disk on host b fails while a's runs, and starts after a's is gone", async () => {
    disk = path.join(lab.repository, `${name}.qcow2`);
    await run("qemu-img", ["create", "-q", "-f", "qcow2", disk, "16M"]);
    fs.chmodSync(disk, 0o666);
    const lockFile = path.join(lab.repository, "lockspace", crypto.createHash("sha256").update(disk).digest("hex"));
    fs.writeFileSync(lockFile, "");
    fs.chmodSync(lockFile, 0o666);
    for (const h of [lab.hosts.a, lab.hosts.b]) {
      const xml = buildDomainXml(
        { name, memoryMiB: 64, vcpus: 1, boot: { kernel: lab.guest.kernel, initrd: lab.guest.initrd, cmdline: "quiet console=ttyS0" } },
        { diskPath: disk, consoleLog: path.join(h.storageDir, `${name}.console.log`) },
      );
      const file = path.join(h.storageDir, `${name}.xml`);
      fs.writeFileSync(file, xml);
      fs.chmodSync(file, 0o644);
      await virsh.run(h.uri, ["define", file]);
    }
    await virsh.run(lab.hosts.a.uri, ["start", name]);
    // a's virtlockd holds the disk's lease in the shared lockspace.
    const locks = await run("lslocks", ["-n", "-o", "COMMAND,MODE,PATH"]);
    expect(locks.split("\n").some((l) => l.includes("virtlockd") && l.includes("WRITE") && l.includes(lockFile))).toBe(true);

    const second = await virsh.run(lab.hosts.b.uri, ["start", name]).then(() => null, (e: Error) => e);
    expect(second).not.toBeNull();
    console.log(`second start on b refused: ${second!.message.split("\n").slice(0, 3).join(" | ")}`);
    expect((await virsh.run(lab.hosts.b.uri, ["domstate", name])).stdout.trim()).toBe("shut off");

    await virsh.run(lab.hosts.a.uri, ["destroy", name]);
    await virsh.run(lab.hosts.b.uri, ["start", name]);
    expect((await virsh.run(lab.hosts.b.uri, ["domstate", name])).stdout.trim()).toBe("running");
  }, 300_000);
});
