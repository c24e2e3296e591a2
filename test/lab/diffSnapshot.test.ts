/**
 * Issue 11 on real streams from this QEMU: memory stored as page groups parsed out of libvirt
 * save images (pc and q35, 128 and 256 MiB), rebuilt and restored on host b; a guest that
 * dirties a known amount between two snapshots stores about that much; an unchanged large disk
 * costs ~nothing.
 */
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { buildDomainXml, parseXml, serializeXml, XmlElement } from "../../hypervisor/libvirt/domainXml";
import { ExecVirsh } from "../../hypervisor/libvirt/virsh";
import { restoreSnapshot, takeSnapshot } from "../../hypervisor/libvirt/snapshots";
import { LAYOUT_ROLE, storeDiffSnapshot } from "../../hypervisor/libvirt/diffSnapshot";
import { parseSaveImage } from "../../hypervisor/libvirt/migrationStream";
import { SnapshotRepository } from "../../repository/repository";
import {
  LabHost,
  LabState,
  cleanupDomains,
  counters,
  ensureLab,
  guestCmdline,
  labAvailable,
  lastCounter,
  removeFiles,
  run,
  chownForHost,
  waitForConsole,
  waitForCounter,
} from "../../lab/lab";

const describeLab = labAvailable() ? describe : describe.skip;
const PREFIX = "pvt-ds-";
const MiB = 1024 * 1024;

describeLab("lab: differential snapshots (page groups, changed clusters)", () => {
  const virsh = new ExecVirsh();
  const tag = `${Date.now().toString(36)}${process.pid.toString(36)}`;
  const names: string[] = [];
  const files: string[] = [];
  let lab: LabState;
  let repoDir: string;

  beforeAll(async () => {
    lab = await ensureLab();
    repoDir = path.join(lab.repository, `ds-${tag}`);
    files.push(repoDir);
  });

  afterAll(async () => {
    if (!lab) return;
    for (const n of names) {
      await cleanupDomains(lab.hosts.a.uri, n, virsh);
      await cleanupDomains(lab.hosts.b.uri, n, virsh);
      for (const h of [lab.hosts.a, lab.hosts.b]) {
        for (const f of fs.readdirSync(h.storageDir)) if (f.startsWith(n)) files.push(path.join(h.storageDir, f));
      }
    }
    removeFiles(...files);
  });

  async function boot(name: string, opts: { memMiB: number; machine?: string; fill: number; rate?: number; diskMiB?: number; diskDataMiB?: number }): Promise<{ log: string; disk: string }> {
    const A = lab.hosts.a;
    names.push(name);
    const disk = path.join(A.storageDir, `${name}.qcow2`);
    const log = path.join(A.storageDir, `${name}.console.log`);
    await run("qemu-img", ["create", "-q", "-f", "qcow2", disk, `${opts.diskMiB ?? 64}M`]);
    if (opts.diskDataMiB) await run("qemu-io", ["-f", "qcow2", "-c", `write -P 0xab 0 ${opts.diskDataMiB}M`, disk]);
    chownForHost(A, disk);
    let xml = buildDomainXml(
      { name, memoryMiB: opts.memMiB, vcpus: 1, boot: { kernel: lab.guest.kernel, initrd: lab.guest.initrd, cmdline: guestCmdline({ mem: opts.fill, rate: opts.rate }) } },
      { diskPath: disk, consoleLog: log },
    );
    if (opts.machine) xml = withMachine(xml, opts.machine);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "pvt-ds-"));
    files.push(dir);
    fs.writeFileSync(path.join(dir, "d.xml"), xml);
    await virsh.run(A.uri, ["define", path.join(dir, "d.xml")]);
    await virsh.run(A.uri, ["start", name]);
    await waitForConsole(log, /^PVREADY /m, 180_000);
    await waitForCounter(log, (lastCounter(log) ?? 0) + 1, 60_000);
    return { log, disk };
  }

  async function expectContinuesOnB(B: LabHost, name: string, lastOnA: number): Promise<void> {
    const logB = path.join(B.storageDir, `${name}.console.log`);
    await waitForConsole(logB, /^PVCOUNT \d+ /m, 120_000);
    const firstB = counters(logB)[0].n;
    expect(firstB).toBeGreaterThan(1); // 1 would be a reboot
    expect(firstB).toBeGreaterThanOrEqual(lastOnA - 1);
    const later = await waitForCounter(logB, firstB + 2, 60_000);
    expect(later).toBeGreaterThanOrEqual(firstB + 2);
    expect(fs.readFileSync(logB, "utf8")).not.toMatch(/PVSTART/);
  }

  test.each([
    ["pc", 128, 16],
    ["q35", 256, 48],
  ])("virsh save of a %s guest with %i MiB -> page groups -> synthesized image -> virsh restore on b: the counter continues", async (machine, memMiB, fill) => {
    const A = lab.hosts.a;
    const B = lab.hosts.b;
    const name = `${PREFIX}${machine}${memMiB}-${tag}`;
    const { log, disk } = await boot(name, { memMiB: memMiB as number, machine: machine as string, fill: fill as number });
    const sav = path.join(A.storageDir, `${name}.pvsnap-raw.sav`);
    const t0 = Date.now();
    await virsh.run(A.uri, ["save", name, sav]);
    const saveMs = Date.now() - t0;
    const lastA = lastCounter(log)!;
    const parsed = parseSaveImage(sav);
    expect(parsed.machineType).toMatch(machine === "pc" ? /^pc-i440fx/ : /^pc-q35/);
    expect(parsed.blocks[0].length).toBe((memMiB as number) * MiB);

    // Store: the disk is quiescent (the domain is stopped), so it is its own frozen top.
    const repo = new SnapshotRepository(repoDir);
    const pending = await repo.begin(name, { host: A.uri, includesMemory: true });
    const scratch = fs.mkdtempSync(path.join(os.tmpdir(), "pvt-ds-"));
    files.push(scratch);
    const tStore = Date.now();
    const layout = await storeDiffSnapshot(repo, pending, { memFile: sav, target: "vda", frozenTop: disk, newOverlay: "", chainBefore: { top: disk, base: disk, chain: [disk] } }, scratch, () => undefined, []);
    fs.writeFileSync(path.join(scratch, "domain.xml"), (await virsh.run(A.uri, ["dumpxml", name])).stdout);
    await pending.addFile("domain.xml", path.join(scratch, "domain.xml"));
    const rec = await pending.commit();
    const storeMs = Date.now() - tStore;
    expect(layout.method.memory).toBe("pages");
    const savBytes = fs.statSync(sav).size;
    // A first snapshot stores about the state: zero groups cost nothing, a group with any
    // non-zero page costs 256 KiB.
    expect(rec.storedBytes).toBeLessThan(savBytes * 1.2);
    expect((await repo.verify(name, rec.id)).ok).toBe(true);

    const tRestore = Date.now();
    await restoreSnapshot(virsh, { snapshot: rec, uri: B.uri, pool: B.pool, repository: repoDir });
    const restoreMs = Date.now() - tRestore;
    await expectContinuesOnB(B, name, lastA);
    // Nothing left in b's pool but the VM's own disk and console log.
    expect(fs.readdirSync(B.storageDir).filter((f) => f.startsWith(name)).sort()).toEqual([`${name}.console.log`, `${name}.qcow2`]);
    console.log(
      `${machine}/${memMiB} MiB: image ${(savBytes / MiB).toFixed(1)} MiB, stored ${(rec.storedBytes / MiB).toFixed(1)} MiB; ` +
        `virsh save ${saveMs} ms, store ${storeMs} ms, restore (rebuild + virsh restore) ${restoreMs} ms; ` +
        `pages ${parsed.stats.pageRecords} zero ${parsed.stats.zeroRecords} resent ${parsed.stats.resentPages}`,
    );
  });

  test("a guest dirtying a known amount: the second snapshot stores about that much; an unchanged 2 GiB disk costs ~nothing; restores on b", async () => {
    const A = lab.hosts.a;
    const B = lab.hosts.b;
    const name = `${PREFIX}dirty-${tag}`;
    const rateMiB = 2;
    const { log } = await boot(name, { memMiB: 256, fill: 128, rate: rateMiB, diskMiB: 2048, diskDataMiB: 100 });
    const lines: string[] = [];
    // The guest's work counter (pages rewritten) read just before each take: the capture follows
    // ~1 s later in both, so the difference is what the guest dirtied between the two captures.
    const take = async () => {
      const work = counters(log).slice(-1)[0].work;
      const r = await takeSnapshot(virsh, { uri: A.uri, name, pool: A.pool, includeMemory: true, repository: repoDir, live: "never", log: (l) => lines.push(l) });
      return { rec: r, work };
    };
    const t1 = Date.now();
    const first = await take();
    const take1Ms = Date.now() - t1;
    expect(first.rec.method).toMatch(/memory: page groups/);
    expect(first.rec.method).toMatch(/disk: full-read/);
    await waitForCounter(log, (lastCounter(log) ?? 0) + 8, 120_000);
    const beforeSecond = lastCounter(log)!;
    const t2 = Date.now();
    const second = await take();
    const take2Ms = Date.now() - t2;
    expect(second.rec.method).toMatch(/disk: changed-clusters/);

    const repo = new SnapshotRepository(repoDir);
    const m2 = await repo.readManifest(name, second.rec.id);
    const stored = (prefix: string) => m2.files.filter((f) => f.role.startsWith(prefix)).reduce((s, f) => s + f.storedBytes, 0);
    const memStored = stored("ram:") + stored("memory.");
    const diskStored = stored("vdisk:");
    const dirtied = (second.work - first.work) * 4096;
    const state = 256 * MiB;
    console.log(
      `dirty test: dirtied ~${(dirtied / MiB).toFixed(1)} MiB (guest work counter), memory stored ${(memStored / MiB).toFixed(2)} MiB ` +
        `(ratio ${(memStored / dirtied).toFixed(2)}), disk stored ${diskStored} bytes of a 2 GiB disk with 100 MiB data; ` +
        `take 1 ${take1Ms} ms, take 2 ${take2Ms} ms; method: ${second.rec.method}; log: ${lines.join(" | ")}`,
    );
    expect(dirtied).toBeGreaterThan(4 * MiB);
    expect(memStored).toBeLessThanOrEqual(1.3 * dirtied + 0.01 * state);
    expect(diskStored).toBeLessThan(1 * MiB);
    expect((await repo.verify(name, second.rec.id)).ok).toBe(true);

    // The VM runs on `kept overlay <- base`, and nothing else of this VM is in a's pool.
    const left = fs.readdirSync(A.storageDir).filter((f) => f.startsWith(name)).sort();
    expect(left.filter((f) => f.endsWith(".mem"))).toEqual([]);
    expect(left.filter((f) => f.includes(".pvsnap-")).length).toBe(1);

    // Raw libvirt on the same guest, for the ratios in the log: virsh save, then virsh restore of
    // that file on a (the guest's counter is not checked there; b's restore below is the test).
    const lastA = lastCounter(log)!;
    const rawSav = path.join(A.storageDir, `${name}.pvsnap-raw.sav`);
    const tSave = Date.now();
    await virsh.run(A.uri, ["save", name, rawSav]);
    const rawSaveMs = Date.now() - tSave;
    const tRawRestore = Date.now();
    await virsh.run(A.uri, ["restore", rawSav, "--paused"]);
    const rawRestoreMs = Date.now() - tRawRestore;
    await virsh.run(A.uri, ["destroy", name]);
    fs.rmSync(rawSav, { force: true });
    const tRestore = Date.now();
    await restoreSnapshot(virsh, { snapshot: second.rec, uri: B.uri, pool: B.pool, repository: repoDir });
    const restoreMs = Date.now() - tRestore;
    console.log(
      `ratios (same guest, same run): take 2 / raw virsh save = ${(take2Ms / rawSaveMs).toFixed(1)} (${take2Ms} / ${rawSaveMs} ms); ` +
        `restore on b (rebuild 2 GiB disk + image, virsh restore) / raw virsh restore = ${(restoreMs / rawRestoreMs).toFixed(1)} (${restoreMs} / ${rawRestoreMs} ms)`,
    );
    // It continues from the second snapshot (taken after beforeSecond), not from a reboot.
    await expectContinuesOnB(B, name, beforeSecond);
    expect(counters(path.join(B.storageDir, `${name}.console.log`))[0].n).toBeLessThanOrEqual(lastA + 1);
    // The restored disk holds the data written before boot.
    const diskB = path.join(B.storageDir, `${name}.qcow2`);
    const map = JSON.parse(await run("qemu-img", ["map", "-U", "--output=json", diskB])) as Array<{ data: boolean; length: number }>;
    expect(map.filter((e) => e.data).reduce((s, e) => s + e.length, 0)).toBeGreaterThanOrEqual(100 * MiB);
    expect(m2.files.some((f) => f.role === LAYOUT_ROLE)).toBe(true);
  });
});

/** The domain XML with <os><type machine=...> set (through the XML model, not text edits). */
function withMachine(xml: string, machine: string): string {
  const dom = parseXml(xml);
  const osEl = dom.children.find((c): c is XmlElement => (c as XmlElement).name === "os") as XmlElement;
  const type = osEl.children.find((c): c is XmlElement => (c as XmlElement).name === "type") as XmlElement;
  type.attrs = type.attrs.map(([k, v]) => [k, k === "machine" ? machine : v] as [string, string]);
  return serializeXml(dom) + "\n";
}
