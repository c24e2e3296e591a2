/**
 * Foundation acceptance test: a guest saved on host A and restored on host B continues where
 * it was (its in-memory counter goes on), it does not reboot.
 */
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { buildDomainXml, parseDomainXml, rewriteForHost } from "../../hypervisor/libvirt/domainXml";
import { ExecVirsh } from "../../hypervisor/libvirt/virsh";
import {
  LabState,
  cleanupDomains,
  copyDisk,
  copyFileForHost,
  counters,
  createDisk,
  ensureLab,
  guestCmdline,
  labAvailable,
  lastCounter,
  removeFiles,
  waitForConsole,
  waitForCounter,
} from "../../lab/lab";

const describeLab = labAvailable() ? describe : describe.skip;
const PREFIX = "pvt-sr-";

describeLab("lab: save on host A, restore on host B", () => {
  const virsh = new ExecVirsh();
  const name = `${PREFIX}${Date.now().toString(36)}${process.pid.toString(36)}`;
  const files: string[] = [];
  let lab: LabState;

  beforeAll(async () => {
    lab = await ensureLab();
  });

  afterAll(async () => {
    if (!lab) return;
    // Only this run's domain: others may run this test against the same lab at the same time.
    await cleanupDomains(lab.hosts.a.uri, name, virsh);
    await cleanupDomains(lab.hosts.b.uri, name, virsh);
    removeFiles(...files);
  });

  test("the counter continues after save/restore across hosts", async () => {
    const A = lab.hosts.a;
    const B = lab.hosts.b;
    const diskA = path.join(A.storageDir, `${name}.qcow2`);
    const logA = path.join(A.storageDir, `${name}.console.log`);
    const state = path.join(lab.repository, `${name}.sav`);
    const stateB = path.join(B.storageDir, `${name}.sav`);
    const diskB = path.join(B.storageDir, `${name}.qcow2`);
    const logB = path.join(B.storageDir, `${name}.console.log`);
    const xmlFile = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "pvt-sr-")), "domain.xml");
    files.push(diskA, logA, state, stateB, diskB, logB, xmlFile, path.dirname(xmlFile));

    // Boot on A.
    await createDisk(A, diskA, 64);
    const xml = buildDomainXml(
      { name, memoryMiB: 256, vcpus: 1, boot: { kernel: lab.guest.kernel, initrd: lab.guest.initrd, cmdline: guestCmdline({ mem: 64 }) } },
      { diskPath: diskA, consoleLog: logA },
    );
    fs.writeFileSync(xmlFile, xml);
    await virsh.run(A.uri, ["define", xmlFile]);
    const tBoot = Date.now();
    await virsh.run(A.uri, ["start", name]);
    await waitForConsole(logA, /^PVCOUNT 1 /m, 120_000);
    const bootMs = Date.now() - tBoot;
    await waitForCounter(logA, 3, 60_000);

    // Save on A into the shared repository (the guest is paused for the whole save, then stops).
    const tSave = Date.now();
    await virsh.run(A.uri, ["save", name, state]);
    const saveMs = Date.now() - tSave;
    const lastA = lastCounter(logA)!;
    const stateBytes = fs.statSync(state).size;

    // Hand the state file and disk to B (B's QEMU runs as another user: copy and chown).
    const tCopy = Date.now();
    await copyFileForHost(state, stateB, B);
    await copyDisk(diskA, diskB, B);
    const copyMs = Date.now() - tCopy;

    const saved = (await virsh.run(A.uri, ["save-image-dumpxml", state])).stdout;
    const restoredXml = rewriteForHost(saved, { diskPath: diskB, consoleLog: logB });
    const parsed = parseDomainXml(restoredXml);
    expect(parsed.name).toBe(name);
    expect(parsed.diskPaths).toEqual([diskB]);
    expect(parsed.consoleLog).toBe(logB);
    fs.writeFileSync(xmlFile, restoredXml);

    // Restore on B.
    const tRestore = Date.now();
    await virsh.run(B.uri, ["restore", stateB, "--xml", xmlFile]);
    const restoreMs = Date.now() - tRestore;
    await waitForConsole(logB, /^PVCOUNT \d+ /m, 60_000);
    const firstB = counters(logB)[0].n;
    const resumeMs = Date.now() - tRestore;

    // It continued: no reboot (a reboot starts at 1) and no going back beyond the save point.
    expect(firstB).not.toBe(1);
    expect(firstB).toBeGreaterThan(lastA - 1);
    // And it keeps counting on B.
    const later = await waitForCounter(logB, firstB + 2, 30_000);
    expect(later).toBeGreaterThanOrEqual(firstB + 2);
    expect(fs.readFileSync(logB, "utf8")).not.toMatch(/PVSTART/);

    const domstate = (await virsh.run(B.uri, ["domstate", name])).stdout.trim();
    expect(domstate).toBe("running");

    console.log(
      [
        `saveRestore timings (TCG, 256 MiB guest, 64 MiB filled):`,
        `  boot to PVCOUNT 1: ${bootMs} ms`,
        `  virsh save on A: ${saveMs} ms (${(stateBytes / 2 ** 20).toFixed(1)} MiB state file)`,
        `  copy state+disk to B: ${copyMs} ms`,
        `  virsh restore on B: ${restoreMs} ms; first PVCOUNT on B after ${resumeMs} ms`,
        `  counter: last on A ${lastA}, first on B ${firstB}, later ${later}`,
      ].join("\n"),
    );
  });
});
