/** The libvirt backend against a scripted virsh: the exact argv it sends and what it leaves behind. */
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { LibvirtBackend } from "../../hypervisor/libvirt/backend";
import { SnapshotRepository } from "../../repository/repository";
import { ScriptedVirsh } from "../support/scriptedVirsh";
import { withPolicyDefaults } from "../../core/policy";
import { parseDomainXml } from "../../hypervisor/libvirt/domainXml";

const URI = "qemu+ssh://a.example/system";
const B = "qemu+ssh://b.example/system";

function domainXml(disk: string) {
  return `<domain type='qemu'><name>vm1</name><uuid>11111111-2222-3333-4444-555555555555</uuid><memory unit='KiB'>131072</memory><vcpu>1</vcpu>
<devices><disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='${disk}'/><target dev='vda' bus='virtio'/></disk></devices></domain>`;
}

function argAfter(args: string[], flag: string): string {
  return args[args.indexOf(flag) + 1];
}

describe("LibvirtBackend with a scripted virsh", () => {
  let pool: string;
  let repoDir: string;
  let virsh: ScriptedVirsh;
  let backend: LibvirtBackend;

  beforeEach(() => {
    pool = fs.mkdtempSync(path.join(os.tmpdir(), "pv-pool-"));
    repoDir = fs.mkdtempSync(path.join(os.tmpdir(), "pv-repo-"));
    fs.writeFileSync(path.join(pool, "vm1.qcow2"), Buffer.alloc(256 * 1024, 7));
    virsh = scripted();
    backend = new LibvirtBackend({ virsh, pool: "pvlab", transfer: "direct" });
  });

  /** virsh for vm1 (running unless `state` says otherwise) with one disk in pool pvlab. */
  function scripted(state: () => string = () => "running"): ScriptedVirsh {
    return new ScriptedVirsh()
      .on(["domstate", "vm1"], () => `${state()}\n`)
      .on(["dumpxml", "vm1"], domainXml(path.join(pool, "vm1.qcow2")))
      .on(["metadata", "vm1"], { error: "metadata not found: Requested metadata element is not present" })
      .on(["pool-dumpxml", "pvlab"], `<pool type='dir'><name>pvlab</name><target><path>${pool}</path></target></pool>`)
      .on(["pool-refresh"], "")
      .on(["blockcommit"], "Successfully pivoted\n");
  }

  afterEach(() => {
    fs.rmSync(pool, { recursive: true, force: true });
    fs.rmSync(repoDir, { recursive: true, force: true });
  });

  function scriptSnapshot(memBytes = 512 * 1024, on: ScriptedVirsh = virsh) {
    on.on(["snapshot-create-as"], ({ args }) => {
      const mem = /file=([^,]+),snapshot=external/.exec(argAfter(args, "--memspec"))![1];
      const overlay = /file=([^,]+)$/.exec(argAfter(args, "--diskspec"))![1];
      fs.writeFileSync(mem, Buffer.alloc(memBytes, 3));
      fs.writeFileSync(overlay, "overlay");
      return "Domain snapshot created\n";
    });
  }

  test("takes an external, non-live, atomic snapshot, commits memory+disk+XML, folds the overlay back", async () => {
    scriptSnapshot();
    const rec = await backend.takeSnapshot({ name: "vm1", host: URI }, { includeMemory: true, repository: repoDir });

    const [snapArgs] = virsh.argsOf("snapshot-create-as");
    expect(snapArgs.slice(0, 2)).toEqual(["snapshot-create-as", "vm1"]);
    expect(snapArgs).toEqual(expect.arrayContaining(["--no-metadata", "--atomic"]));
    expect(snapArgs).not.toContain("--live"); // live snapshots may never converge (lab notes)
    expect(argAfter(snapArgs, "--memspec")).toMatch(new RegExp(`^file=${pool}/vm1\\.pvsnap-[^,]+\\.mem,snapshot=external$`));
    expect(argAfter(snapArgs, "--diskspec")).toMatch(/^vda,snapshot=external,file=.*overlay\.qcow2$/);
    expect(virsh.argsOf("blockcommit")).toEqual([["blockcommit", "vm1", "vda", "--active", "--pivot", "--wait"]]);
    // Every call went to the VM's host as an argv array; nothing through a shell.
    expect(virsh.calls.every((c) => c.uri === URI)).toBe(true);

    expect(rec).toMatchObject({ vm: "vm1", host: URI, complete: true, includesMemory: true, backend: "libvirt" });
    expect(rec.bytes).toBe(512 * 1024 + 256 * 1024 + domainXml("").length + path.join(pool, "vm1.qcow2").length);
    const repo = new SnapshotRepository(repoDir);
    expect((await repo.verify("vm1", rec.id)).ok).toBe(true);
    const files = await repo.materialize("vm1", rec.id, fs.mkdtempSync(path.join(os.tmpdir(), "pv-mat-")));
    expect(Object.keys(files).sort()).toEqual(["disk:vda", "domain.xml", "memory"]);
    expect(fs.readFileSync(files.memory)).toEqual(Buffer.alloc(512 * 1024, 3));
    // Staging files are gone from the host's pool: only the disk remains.
    expect(fs.readdirSync(pool)).toEqual(["vm1.qcow2"]);
  });

  test("a remote host's files are streamed through libvirt (vol-download), never read by path", async () => {
    scriptSnapshot(300 * 1024);
    const volumes = () => fs.readdirSync(pool);
    virsh
      .on(["vol-download"], ({ args }) => {
        // vol-download --pool pvlab VOLUME LOCALFILE: the daemon streams the volume to us.
        fs.copyFileSync(path.join(pool, args[3]), args[4]);
        return "";
      })
      .on(["vol-info"], ({ args }) => (volumes().includes(args[3]) ? "Name: x\n" : { error: "error: Storage volume not found: no storage vol with matching path" }))
      .on(["vol-delete"], ({ args }) => {
        fs.rmSync(path.join(pool, args[3]));
        return "";
      });
    const remote = new LibvirtBackend({ virsh, pool: "pvlab" }); // auto: qemu+ssh:// streams
    const rec = await remote.takeSnapshot({ name: "vm1", host: URI }, { includeMemory: true, repository: repoDir });
    const downloaded = virsh.argsOf("vol-download").map((a) => a.slice(0, 4));
    expect(downloaded).toEqual([
      ["vol-download", "--pool", "pvlab", "vm1.qcow2"],
      ["vol-download", "--pool", "pvlab", expect.stringMatching(/^vm1\.pvsnap-.*\.mem$/)],
    ]);
    // Staging files on the host are removed through libvirt too.
    expect(virsh.argsOf("vol-delete").map((a) => a[3])).toEqual(expect.arrayContaining([expect.stringMatching(/\.mem$/), expect.stringMatching(/overlay\.qcow2$/)]));
    expect(volumes()).toEqual(["vm1.qcow2"]);
    const files = await new SnapshotRepository(repoDir).materialize("vm1", rec.id, fs.mkdtempSync(path.join(os.tmpdir(), "pv-mat-")));
    expect(fs.readFileSync(files.memory)).toEqual(Buffer.alloc(300 * 1024, 3));
  });

  describe("live snapshots (policy liveSnapshot: auto)", () => {
    const dirty = (mbps: number) => `Domain: 'vm1'\n  dirtyrate.calc_status=2\n  dirtyrate.megabytes_per_second=${mbps}\n`;

    test("a slow writer is snapshotted live; a fast one with the guest paused", async () => {
      scriptSnapshot();
      virsh.on(["domdirtyrate-calc"], "").on(["domstats", "vm1", "--dirtyrate"], dirty(2));
      const rec = await backend.takeSnapshot({ name: "vm1", host: URI }, { includeMemory: true, repository: repoDir, live: "auto" });
      expect(virsh.argsOf("domdirtyrate-calc")).toEqual([["domdirtyrate-calc", "vm1", "--seconds", "1"]]);
      expect(virsh.argsOf("snapshot-create-as")[0]).toContain("--live");
      expect(rec.live).toBe(true);
      expect(rec.pauseMs).toBeUndefined(); // libvirt does not report the switch-over pause

      const fast = scripted().on(["domdirtyrate-calc"], "").on(["domstats", "vm1", "--dirtyrate"], dirty(98));
      scriptSnapshot(512 * 1024, fast);
      const rec2 = await new LibvirtBackend({ virsh: fast, pool: "pvlab", transfer: "direct" }).takeSnapshot({ name: "vm1", host: URI }, { includeMemory: true, repository: repoDir, live: "auto" });
      expect(fast.argsOf("snapshot-create-as")[0]).not.toContain("--live");
      expect(rec2.live).toBe(false);
      expect(rec2.pauseMs).toBeGreaterThanOrEqual(0);
    });

    test("a live snapshot that has not converged by the deadline pauses the guest, which is resumed after", async () => {
      let state = "running";
      virsh = scripted(() => state);
      backend = new LibvirtBackend({ virsh, pool: "pvlab", transfer: "direct" });
      virsh.on(["domdirtyrate-calc"], "").on(["domstats", "vm1", "--dirtyrate"], dirty(1)).on(["suspend"], "").on(["resume"], "");
      virsh.on(["snapshot-create-as"], async ({ args }) => {
        const mem = /file=([^,]+),snapshot=external/.exec(args[args.indexOf("--memspec") + 1])![1];
        fs.writeFileSync(mem, "m");
        fs.writeFileSync(/file=([^,]+)$/.exec(args[args.indexOf("--diskspec") + 1])![1], "o");
        // Converges only once the guest stops writing: when it is suspended.
        while (!virsh.argsOf("suspend").length) await new Promise((r) => setTimeout(r, 50));
        state = "paused";
        return "Domain snapshot created\n";
      });
      const t = Date.now();
      await backend.takeSnapshot({ name: "vm1", host: URI }, { includeMemory: true, repository: repoDir, live: "auto" });
      expect(Date.now() - t).toBeGreaterThanOrEqual(3000);
      expect(virsh.argsOf("suspend")).toEqual([["suspend", "vm1"]]);
      expect(virsh.argsOf("resume")).toEqual([["resume", "vm1"]]);
    });
  });

  test("two takes of one VM at once (two schedulers): the second waits for the first; both commit, no overlap, no debris", async () => {
    let active = 0;
    let maxActive = 0;
    virsh.on(["snapshot-create-as"], async ({ args }) => {
      active++;
      maxActive = Math.max(maxActive, active);
      fs.writeFileSync(/file=([^,]+),snapshot=external/.exec(argAfter(args, "--memspec"))![1], Buffer.alloc(64 * 1024, 3));
      fs.writeFileSync(/file=([^,]+)$/.exec(argAfter(args, "--diskspec"))![1], "overlay");
      await new Promise((r) => setTimeout(r, 400));
      active--;
      return "Domain snapshot created\n";
    });
    const other = new LibvirtBackend({ virsh, pool: "pvlab", transfer: "direct" }); // a second scheduler
    const [a, b] = await Promise.all([
      backend.takeSnapshot({ name: "vm1", host: URI }, { includeMemory: true, repository: repoDir }),
      other.takeSnapshot({ name: "vm1", host: URI }, { includeMemory: true, repository: repoDir }),
    ]);
    expect(maxActive).toBe(1);
    const list = await new SnapshotRepository(repoDir).list("vm1");
    expect(list.map((r) => r.id).sort()).toEqual([a.id, b.id].sort());
    expect(list.every((r) => r.complete)).toBe(true);
    expect(fs.readdirSync(pool)).toEqual(["vm1.qcow2"]);
    expect(fs.readdirSync(path.join(repoDir, "locks"))).toEqual([]);
  });

  test("a take whose overlay fold fails after the commit is reported committed, not failed", async () => {
    // Reported as a JSON line on stderr (the take's default logger), not as a failure.
    const warn = jest.spyOn(process.stderr, "write").mockImplementation(() => true);
    try {
      // Rules answer in order: the failing blockcommit goes before the scripted success.
      virsh = new ScriptedVirsh().on(["blockcommit"], { error: "error: internal error: unable to execute QEMU command 'block-commit'" });
      for (const [m, a] of [[["domstate", "vm1"], "running\n"], [["dumpxml", "vm1"], domainXml(path.join(pool, "vm1.qcow2"))], [["pool-dumpxml", "pvlab"], `<pool type='dir'><name>pvlab</name><target><path>${pool}</path></target></pool>`], [["pool-refresh"], ""]] as const) virsh.on([...m], a);
      scriptSnapshot(512 * 1024, virsh);
      backend = new LibvirtBackend({ virsh, pool: "pvlab", transfer: "direct" });
      const rec = await backend.takeSnapshot({ name: "vm1", host: URI }, { includeMemory: true, repository: repoDir });
      expect(rec.complete).toBe(true);
      expect((await new SnapshotRepository(repoDir).verify("vm1", rec.id)).ok).toBe(true);
      const messages = warn.mock.calls.map((c) => String(c[0])).filter((l) => l.startsWith("{")).map((l) => JSON.parse(l).message as string);
      expect(messages.join("\n")).toMatch(new RegExp(`snapshot ${rec.id} of vm1 is committed; folding the overlay back afterwards failed: .*block-commit`));
    } finally {
      warn.mockRestore();
    }
  });

  test("a failed snapshot leaves no snapshot, complete or not, and says why", async () => {
    virsh.on(["snapshot-create-as"], { error: "error: operation failed: domain is not running" });
    await expect(backend.takeSnapshot({ name: "vm1", host: URI }, { includeMemory: true, repository: repoDir })).rejects.toThrow(/domain is not running/);
    expect(await new SnapshotRepository(repoDir).list("vm1")).toEqual([]);
    expect(virsh.argsOf("blockcommit")).toEqual([]);
  });

  test("refuses to snapshot a VM that is not running", async () => {
    virsh = new ScriptedVirsh().on(["domstate", "vm1"], "shut off\n");
    backend = new LibvirtBackend({ virsh, pool: "pvlab" });
    await expect(backend.takeSnapshot({ name: "vm1", host: URI }, { includeMemory: true, repository: repoDir })).rejects.toThrow(/shutoff.*needs a running VM/);
  });

  test("defineVm creates the disk through the pool and stores the protection record in <metadata>", async () => {
    let definedXml = "";
    virsh
      .on(["vol-info"], { error: "error: failed to get vol 'vm2.qcow2'\nerror: Storage volume not found: no storage vol with matching path" })
      .on(["vol-create-as"], "Vol vm2.qcow2 created\n")
      .on(["vol-path"], `${pool}/vm2.qcow2\n`)
      .on(["define"], ({ args }) => {
        definedXml = fs.readFileSync(args[1], "utf8");
        return "Domain 'vm2' defined\n";
      })
      .on(["domstate", "vm2"], "shut off\n")
      .on(["dumpxml", "vm2"], () => definedXml);
    const protection = { version: 1 as const, backend: "libvirt" as const, primaryHost: URI, recoveryHosts: [B], policy: withPolicyDefaults({ repository: repoDir }) };
    const info = await backend.defineVm({ name: "vm2", memoryMiB: 128, vcpus: 1, disk: { sizeMiB: 32, pool: "pvlab" }, protection }, URI);
    expect(virsh.argsOf("vol-create-as")).toEqual([["vol-create-as", "pvlab", "vm2.qcow2", "32M", "--format", "qcow2"]]);
    const defined = parseDomainXml(definedXml);
    expect(defined.diskPaths).toEqual([`${pool}/vm2.qcow2`]);
    expect(defined.consoleLog).toBe(`${pool}/vm2.console.log`);
    expect(info.protection).toEqual({ ...protection, pool: "pvlab" });
    expect(info.state).toBe("shutoff");
  });

  describe("a failed create removes what it made and never adopts a disk it did not write (issue 14, point 7)", () => {
    const protection = () => ({ version: 1 as const, backend: "libvirt" as const, primaryHost: URI, recoveryHosts: [B], policy: withPolicyDefaults({ repository: repoDir }) });
    /** A pool backed by the temp directory: volumes are files there. */
    function withPoolVolumes(v: ScriptedVirsh, uploadFails: boolean): ScriptedVirsh {
      const vol = (n: string) => path.join(pool, n);
      return v
        .on(["vol-info"], ({ args }) => (fs.existsSync(vol(args[3])) ? "Name: x\n" : { error: "error: Storage volume not found: no storage vol with matching path" }))
        .on(["vol-create-as"], ({ args }) => (fs.writeFileSync(vol(args[2]), "empty qcow2"), `Vol ${args[2]} created\n`))
        .on(["vol-upload"], ({ args }) => (uploadFails ? { error: `error: cannot open ${args[4]}: No such file or directory` } : (fs.copyFileSync(args[4], vol(args[3])), "")))
        .on(["vol-path"], ({ args }) => `${vol(args[3])}\n`)
        .on(["vol-delete"], ({ args }) => (fs.rmSync(vol(args[3])), ""))
        .on(["vol-list"], () => ` Name   Path\n---------\n${fs.readdirSync(pool).map((f) => ` ${f}   ${vol(f)}\n`).join("")}`)
        .on(["undefine"], { error: "error: failed to get domain 'vm2'\nerror: Domain not found" });
    }

    test("the image copy fails: the new disk is removed from the pool", async () => {
      withPoolVolumes(virsh, true);
      const spec = { name: "vm2", memoryMiB: 128, vcpus: 1, disk: { sizeMiB: 16, pool: "pvlab", image: "/nonexistent/image.qcow2" }, protection: protection() };
      await expect(backend.defineVm(spec, URI, { create: true })).rejects.toThrow(/No such file/);
      expect(virsh.argsOf("vol-create-as")).toHaveLength(1);
      expect(fs.readdirSync(pool)).toEqual(["vm1.qcow2"]);
    });

    test("define fails after the disk was written: disk removed, no domain left", async () => {
      withPoolVolumes(virsh, false).on(["define"], { error: "error: XML error: unsupported configuration" });
      const spec = { name: "vm2", memoryMiB: 128, vcpus: 1, disk: { sizeMiB: 16, pool: "pvlab" }, protection: protection() };
      await expect(backend.defineVm(spec, URI, { create: true })).rejects.toThrow(/unsupported configuration/);
      expect(fs.readdirSync(pool)).toEqual(["vm1.qcow2"]);
      expect(virsh.argsOf("undefine").map((a) => a[1])).toEqual(["vm2"]);
    });

    test("a disk of that name already in the pool (a leftover) is refused, untouched, and names the field", async () => {
      withPoolVolumes(virsh, false);
      fs.writeFileSync(path.join(pool, "vm2.qcow2"), "leftover");
      const image = path.join(repoDir, "image.qcow2");
      fs.writeFileSync(image, "the real image");
      const spec = { name: "vm2", memoryMiB: 128, vcpus: 1, disk: { sizeMiB: 16, pool: "pvlab", image }, protection: protection() };
      await expect(backend.defineVm(spec, URI, { create: true })).rejects.toThrow(/^disk: volume vm2\.qcow2 already exists in pool pvlab .*did not write it/);
      expect(fs.readFileSync(path.join(pool, "vm2.qcow2"), "utf8")).toBe("leftover");
      expect(virsh.argsOf("vol-create-as")).toEqual([]);
      expect(virsh.argsOf("vol-upload")).toEqual([]);
    });

    test("a missing pool is reported by hostProblems (disk.pool) and nothing is made", async () => {
      virsh.on(["pool-info", "nopool"], { error: "error: failed to get pool 'nopool'\nerror: Storage pool not found: no storage pool with matching name 'nopool'" });
      const spec = { name: "vm2", memoryMiB: 128, vcpus: 1, disk: { sizeMiB: 16, pool: "nopool" }, protection: protection() };
      expect(await backend.hostProblems(URI, spec)).toEqual([{ field: "disk.pool", message: expect.stringMatching(/storage pool nopool is not usable .*Storage pool not found/) }]);
      expect(virsh.calls.every((c) => c.args[0] === "pool-info")).toBe(true);
    });
  });

  test("findVm prefers the host where the VM runs and skips hosts that do not answer", async () => {
    virsh = new ScriptedVirsh()
      .on(["domstate", "vm1"], { error: "error: failed to connect to the hypervisor" }, URI)
      .on(["domstate", "vm1"], "running\n", B)
      .on(["dumpxml", "vm1"], domainXml("/b/vm1.qcow2"), B)
      .on(["metadata", "vm1"], { error: "metadata not found" }, B);
    backend = new LibvirtBackend({ virsh });
    const found = await backend.findVm("vm1", [URI, B]);
    expect(found).toMatchObject({ name: "vm1", host: B, state: "running", memoryMiB: 128, vcpus: 1 });
  });
});
