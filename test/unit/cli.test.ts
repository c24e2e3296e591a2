/**
 * The protected-vm CLI: --help on every command, usage errors exit 2 naming the option, and the
 * same exit code for the same outcome on every backend (0 done, 1 failed, 2 usage, 3 refused,
 * 4 drill check failed). In process with injected backends (a scripted virsh, a fake Backend), and
 * as a process (dist/cli/main.js, like a user or CI) against the loopback CloudStack.
 */
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import type { Command } from "commander";
import { buildProgram, main } from "../../cli/main";
import type { CliContext } from "../../cli/program";
import type { Backend } from "../../hypervisor/backend";
import type { BackendConnection } from "../../hypervisor/createBackend";
import type { HostRef, SnapshotRecord, VmInfo, VmRef } from "../../core/model";
import { withPolicyDefaults, ProtectionRecord } from "../../core/policy";
import { EXIT } from "../../core/errors";
import { LibvirtBackend } from "../../hypervisor/libvirt/backend";
import { RecoveryRefusedError } from "../../hypervisor/cloudstack/recovery";
import { ScriptedVirsh } from "../support/scriptedVirsh";
import { runCli } from "../support/cli";
import { backendFor, startCloud } from "../support/cloudstack/harness";
import { progress } from "../../lib/progress";

const A = "qemu+ssh://a.example/system";
const B = "qemu+ssh://b.example/system";

interface Captured {
  ctx: CliContext;
  out: () => string;
  err: () => string;
  backends: BackendConnection[];
}

function capture(backend?: (conn: BackendConnection) => Backend, env: NodeJS.ProcessEnv = {}): Captured {
  let out = "";
  let err = "";
  const backends: BackendConnection[] = [];
  const ctx: CliContext = {
    stdout: { write: (s: string, cb?: () => void) => ((out += s), cb?.()) },
    stderr: { write: (s: string, cb?: () => void) => ((err += s), cb?.()) },
    env,
    createBackend: (conn) => {
      backends.push(conn);
      if (!backend) throw new Error("this test builds no backend");
      return backend(conn);
    },
    exitCode: 0,
  };
  return { ctx, out: () => out, err: () => err, backends };
}

/** Every command path in the tree: [["stack"], ["stack","up"], ..., ["drill"]]. */
function commandPaths(cmd: Command, prefix: string[] = []): string[][] {
  return cmd.commands.flatMap((c) => [[...prefix, c.name()], ...commandPaths(c, [...prefix, c.name()])]);
}

describe("help", () => {
  const paths = commandPaths(buildProgram(capture().ctx));

  test("the tree has the documented commands", () => {
    expect(paths.map((p) => p.join(" "))).toEqual(
      expect.arrayContaining(["stack", "stack up", "stack preview", "stack refresh", "stack destroy", "stack outputs", "stack resources", "scheduler", "recover", "drill"]),
    );
  });

  test.each([[[] as string[]], ...paths.map((p) => [p])])("protected-vm %j --help prints its usage and exits 0", async (p) => {
    const c = capture();
    expect(await main([...p, "--help"], c.ctx)).toBe(EXIT.ok);
    expect(c.out()).toContain(`Usage: protected-vm${p.length ? " " + p.join(" ") : ""} `);
    expect(c.err()).toBe("");
  });

  test("options keep their names: recover and drill show the documented flags", async () => {
    const r = capture();
    await main(["recover", "--help"], r.ctx);
    for (const f of ["--hosts", "--repository", "--to", "--snapshot", "--force", "--json", "--backend", "--pool"]) expect(r.out()).toContain(f);
    const d = capture();
    await main(["drill", "--help"], d.ctx);
    for (const f of ["--cleanup", "--max-rpo-seconds", "--rpo-factor", "--console-check", "--keep", "--state-dir", "--verify-ms"]) expect(d.out()).toContain(f);
  });
});

describe("usage errors exit 2 and name the option", () => {
  test.each([
    [["recover", "vm1", "--hosts", "a,b"], /required option '--repository <dir>' not specified/],
    [["recover", "vm1", "--repository", "/r"], /required option '--hosts <host,\.\.\.>' not specified/],
    [["recover", "vm1", "--hosts", "a,b", "--repository", "/r", "--backend", "xen"], /option '--backend <kind>' argument 'xen' is invalid/],
    [["drill", "vm1", "--hosts", "a,b", "--repository", "/r", "--max-rpo-seconds", "soon"], /option '--max-rpo-seconds <n>' argument 'soon' is invalid\. takes a number > 0/],
    [["scheduler", "--hosts", "a", "--max-snapshot", "1"], /unknown option '--max-snapshot'/],
    [["stack", "up", "--stack", "x"], /required option '--program <module\.js>' not specified/],
    [["stack", "launch"], /unknown command 'launch'/],
    [["recover", "--hosts", "a,b", "--repository", "/r"], /missing required argument 'vm'/],
    [[], /Usage: protected-vm/],
  ])("%j", async (argv, message) => {
    const c = capture(() => {
      throw new Error("a usage error must stop before any backend is built");
    });
    expect(await main(argv, c.ctx)).toBe(EXIT.usage);
    expect(c.err()).toMatch(message);
    expect(c.backends).toEqual([]);
  });

  test("a drill without --repository is a usage error (a cleanup needs none)", async () => {
    const c = capture();
    expect(await main(["drill", "vm1", "--hosts", "a,b"], c.ctx)).toBe(EXIT.usage);
    expect(c.err()).toMatch(/--repository <dir> is required for a drill/);
    expect(c.err()).toMatch(/protected-vm drill --help/);
  });

  test("--backend cloudstack without its environment: exit 2 naming the variable, and the key is never printed", async () => {
    const c = capture(undefined, { CLOUDSTACK_API_KEY: "ak-visible-only-here", CLOUDSTACK_SECRET_KEY: "sk-never-print-me" });
    // The real factory: the config check is the CloudStack backend's own.
    c.ctx.createBackend = (conn) => require("../../hypervisor/createBackend").createBackend(conn);
    expect(await main(["recover", "vm1", "--backend", "cloudstack", "--hosts", "h1,h2", "--repository", "secondary", "--json"], c.ctx)).toBe(EXIT.usage);
    expect(c.err()).toMatch(/CLOUDSTACK_API_URL/);
    expect(JSON.parse(c.out())).toMatchObject({ ok: false, exitCode: 2 });
    expect(c.out() + c.err()).not.toContain("sk-never-print-me");
  });

  test("as a process: dist/cli/main.js exits 2 on an unknown option", async () => {
    const r = await runCli(["recover", "vm1", "--hosts", "a,b", "--repository", "/r", "--frce"]);
    expect(r.code).toBe(EXIT.usage);
    expect(r.stderr).toMatch(/unknown option '--frce'/);
  });
});

// ------------------------------------------------------------------ libvirt: a scripted virsh

describe("recover refused on libvirt: the VM still runs on its live primary", () => {
  const MUTATING = ["destroy", "restore", "define", "start", "undefine", "snapshot-create-as", "migrate"];

  test("exit 3 with the reason, JSON on stdout, and nothing is changed on either host", async () => {
    const repo = fs.mkdtempSync(path.join(os.tmpdir(), "pv-cli-repo-"));
    const virsh = new ScriptedVirsh()
      .on(["nodeinfo"], "CPU model: x86_64\n")
      .on(["domstate", "vm1"], { error: "error: failed to get domain 'vm1'" }, B)
      .on(["dominfo", "vm1"], { error: "error: failed to get domain 'vm1'" }, B)
      .on(["dumpxml", "vm1"], { error: "error: failed to get domain 'vm1'" }, B)
      .on(["domstate", "vm1"], "running\n", A)
      .on(["dumpxml", "vm1"], `<domain type='qemu'><name>vm1</name><uuid>11111111-2222-3333-4444-555555555555</uuid><memory unit='KiB'>131072</memory><vcpu>1</vcpu><devices/></domain>`, A)
      .on(["metadata", "vm1"], { error: "metadata not found: Requested metadata element is not present" }, A);
    const c = capture((conn) => {
      expect(conn).toEqual({ kind: "libvirt", pool: "pvlab" });
      return new LibvirtBackend({ virsh, pool: "pvlab", transfer: "direct" });
    });
    const code = await main(["recover", "vm1", "--hosts", `${A},${B}`, "--repository", repo, "--pool", "pvlab", "--json"], c.ctx);
    expect(code).toBe(EXIT.refused);
    const out = JSON.parse(c.out());
    expect(out).toMatchObject({ ok: false, refused: true, exitCode: 3 });
    expect(out.error).toMatch(/still running on .*a\.example.*split brain/);
    expect(c.err()).toMatch(/protected-vm recover: refused: /);
    expect(virsh.calls.filter((call) => MUTATING.includes(call.args[0]))).toEqual([]);
    fs.rmSync(repo, { recursive: true, force: true });
  });
});

// ------------------------------------------------------------------ a fake Backend (drills, failures)

class FakeBackend implements Partial<Backend> {
  readonly kind = "cloudstack" as const; // no libvirt pool scan in drill cleanup
  vms = new Map<string, VmInfo>();
  snapshots: SnapshotRecord[] = [];
  restoreError?: Error;
  hostError?: Error;
  taken = 0;
  restores = 0;
  constructor(snapshotAgeS = 5) {
    const protection: ProtectionRecord = { version: 1, backend: "cloudstack", primaryHost: A, recoveryHosts: [B], policy: withPolicyDefaults({ repository: "secondary", maxIntervalSeconds: 60, keepLast: 3 }) };
    this.vms.set(`${A}|prod`, { name: "prod", id: "uuid-prod", host: A, state: "running", memoryMiB: 128, vcpus: 1, protection });
    this.snapshots.push(this.record("s1", new Date(Date.now() - snapshotAgeS * 1000)));
  }
  record(id: string, at: Date): SnapshotRecord {
    return { id, vm: "prod", backend: "cloudstack", host: A, createdAt: at.toISOString(), includesMemory: true, bytes: 1000, storedBytes: 400, complete: true, location: id, pauseMs: 12, durationMs: 34, live: false };
  }
  async hostAlive() {
    if (this.hostError) throw this.hostError;
    return true;
  }
  /** Like the real backends: the host where it runs first, else any host that has it. */
  async findVm(name: string, hosts: HostRef[]) {
    const found = hosts.map((h) => this.vms.get(`${h}|${name}`)).filter((v): v is VmInfo => !!v);
    return found.find((v) => v.state === "running") ?? found[0];
  }
  async listProtectedVms(host: HostRef) {
    return [...this.vms.values()].filter((v) => v.host === host && v.protection);
  }
  async listSnapshots(vm: string) {
    return this.snapshots.filter((s) => s.vm === vm).sort((a, b) => b.createdAt.localeCompare(a.createdAt));
  }
  async verifySnapshot() {
    return true;
  }
  async deleteSnapshot(s: SnapshotRecord) {
    this.snapshots = this.snapshots.filter((x) => x.id !== s.id);
  }
  async takeSnapshot(vm: VmRef) {
    const r = this.record(`s${this.snapshots.length + 1}`, new Date());
    r.host = vm.host;
    this.snapshots.push(r);
    this.taken++;
    return r;
  }
  async cpuUsage() {
    return 3.14;
  }
  async restoreSnapshot(s: SnapshotRecord, host: HostRef, o: { name?: string }) {
    this.restores++;
    if (this.restoreError) throw this.restoreError;
    const name = o.name ?? s.vm;
    const prod = this.vms.get(`${A}|prod`)!;
    this.vms.set(`${host}|${name}`, { ...prod, name, id: `uuid-${name}`, host, state: "running" });
    return this.vms.get(`${host}|${name}`)!;
  }
  async setProtection(vm: VmRef, protection: ProtectionRecord) {
    this.vms.get(`${vm.host}|${vm.name}`)!.protection = protection;
  }
  async deleteVm(vm: VmRef) {
    this.vms.delete(`${vm.host}|${vm.name}`);
  }
}

const drillArgs = (stateDir: string) => ["drill", "prod", "--hosts", `${A},${B}`, "--repository", "secondary", "--verify-ms", "1", "--state-dir", stateDir, "--json"];

describe("exit codes with a fake backend", () => {
  let stateDir: string;
  beforeEach(() => (stateDir = fs.mkdtempSync(path.join(os.tmpdir(), "pv-cli-drill-"))));
  afterEach(() => fs.rmSync(stateDir, { recursive: true, force: true }));

  test("a passing drill exits 0 with its report on stdout", async () => {
    const be = new FakeBackend(5);
    const c = capture(() => be as unknown as Backend);
    expect(await main(drillArgs(stateDir), c.ctx)).toBe(EXIT.ok);
    const report = JSON.parse(c.out());
    expect(report).toMatchObject({ ok: true, vm: "prod", host: B, snapshotId: "s1" });
    expect([...be.vms.keys()]).toEqual([`${A}|prod`]); // the copy was removed
    // Progress went to stderr as JSON lines (pino), one per step.
    const steps = c.err().trim().split("\n").map((l) => JSON.parse(l));
    expect(steps.map((s) => s.step)).toEqual(expect.arrayContaining(["production", "restore", "verify", "done"]));
  });

  test("a drill whose snapshot is too old exits 4 (check failed)", async () => {
    const c = capture(() => new FakeBackend(1000) as unknown as Backend);
    expect(await main(drillArgs(stateDir), c.ctx)).toBe(EXIT.checkFailed);
    const report = JSON.parse(c.out());
    expect(report.ok).toBe(false);
    expect(report.checks.find((x: { name: string }) => x.name === "snapshot-recent").ok).toBe(false);
  });

  test("a backend's refusal during a drill (CloudStack RecoveryRefusedError) is refused (3), not a failed restore (4)", async () => {
    const be = new FakeBackend(5);
    be.restoreError = new RecoveryRefusedError("cannot recover prod onto host h2: it is Disconnected/Enabled; pick a host that is Up and Enabled");
    const c = capture(() => be as unknown as Backend);
    expect(await main(drillArgs(stateDir), c.ctx)).toBe(EXIT.refused);
    expect(be.restores).toBe(1);
    const out = JSON.parse(c.out());
    expect(out).toMatchObject({ ok: false, refused: true, exitCode: 3 });
    expect(out.error).toMatch(/Disconnected/);
    expect(out.checks).toBeUndefined(); // no drill report claiming the copy failed
    expect([...be.vms.keys()]).toEqual([`${A}|prod`]);
  });

  test("a drill against a VM that does not exist is refused (3), in text mode too", async () => {
    const c = capture(() => new FakeBackend(5) as unknown as Backend);
    const argv = drillArgs(stateDir).filter((a) => a !== "--json");
    argv[1] = "nosuchvm";
    expect(await main(argv, c.ctx)).toBe(EXIT.refused);
    expect(c.out()).toBe("");
    expect(c.err()).toMatch(/protected-vm drill: refused: nosuchvm was not found/);
  });

  test("an unexpected error (the hypervisor API breaks) is failed (1)", async () => {
    const be = new FakeBackend(5);
    be.hostError = new Error("connection reset by peer");
    const c = capture(() => be as unknown as Backend);
    expect(await main(["recover", "prod", "--hosts", `${A},${B}`, "--repository", "secondary"], c.ctx)).toBe(EXIT.failed);
    expect(c.err()).toMatch(/protected-vm recover: failed: connection reset by peer/);
  });

  test("recover onto the recovery host exits 0 with the report; a second run reports alreadyRecovered", async () => {
    const be = new FakeBackend(5);
    be.vms.get(`${A}|prod`)!.state = "shutoff"; // host a lost it
    const argv = ["recover", "prod", "--hosts", `${A},${B}`, "--repository", "secondary", "--json"];
    const c = capture(() => be as unknown as Backend);
    const first = main(argv, c.ctx);
    expect(await first).toBe(EXIT.ok);
    expect(JSON.parse(c.out())).toMatchObject({ vm: "prod", to: B, snapshotId: "s1", alreadyRecovered: false });
    const again = capture(() => be as unknown as Backend);
    expect(await main(argv, again.ctx)).toBe(EXIT.ok);
    expect(JSON.parse(again.out())).toMatchObject({ to: B, alreadyRecovered: true });
  }, 20_000);
});

// ------------------------------------------------------------------ scheduler: pino JSON lines

describe("scheduler events", () => {
  test("one JSON line per event on stdout, with every field the scheduler reports", async () => {
    const be = new FakeBackend(5);
    const c = capture(() => be as unknown as Backend);
    expect(await main(["scheduler", "--hosts", `${A},${B}`, "--vm", "prod", "--max-snapshots", "1", "--cpu-sample-ms", "1"], c.ctx)).toBe(EXIT.ok);
    expect(be.taken).toBe(1);
    const text = c.out();
    const lines = text.trim().split("\n").map((l) => JSON.parse(l));
    expect(lines.map((l) => l.event)).toEqual(["discovered", "snapshot", "rpo", "stopped"]);
    const snap = lines[1];
    expect(snap).toMatchObject({ level: "info", event: "snapshot", vm: "prod", host: A, id: "s2", bytes: 1000, storedBytes: 400, durationMs: 34, pauseMs: 12, live: false });
    expect(snap.previousAgeSeconds).toBeGreaterThanOrEqual(5);
    expect(Date.parse(snap.at)).not.toBeNaN();
    expect(lines[2]).toMatchObject({ event: "rpo", vm: "prod", cpuPercent: 3.1 });
    expect(typeof lines[2].nextIntervalSeconds).toBe("number");
    expect(typeof lines[2].rpoSeconds).toBe("number");
    // The shape test/lab/schedulerProcess.test.ts waits for in the log file.
    expect(text).toMatch(/"event":"snapshot","at":"[^"]+","vm":"prod"/);
    expect(c.err()).toBe("");
  });

  test("a failed snapshot is a warning line naming the error", async () => {
    const be = new FakeBackend(5);
    be.takeSnapshot = async () => {
      throw new Error("disk full");
    };
    const c = capture(() => be as unknown as Backend);
    const run = main(["scheduler", "--hosts", A, "--cpu-sample-ms", "1", "--discover-every-ms", "100000"], c.ctx);
    const deadline = Date.now() + 5000;
    while (!c.out().includes("snapshot-failed") && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    process.emit("SIGTERM");
    expect(await run).toBe(EXIT.ok);
    const failed = c.out().trim().split("\n").map((l) => JSON.parse(l)).find((l) => l.event === "snapshot-failed");
    expect(failed).toMatchObject({ level: "warn", vm: "prod", host: A, error: "disk full" });
  });
});

// ------------------------------------------------------------------ progress helper

test("progress prints no bar when the stream is not a terminal; log lines stay plain", () => {
  let written = "";
  const p = progress({ title: "restore", total: 3, stream: { write: (s: string) => (written += s), isTTY: false } });
  p.step(0, "locate");
  p.step(2, "restore");
  p.log("[restore] restoring s1");
  p.stop();
  expect(written).toBe("[restore] restoring s1\n");
});

// ------------------------------------------------------------------ CloudStack: the CLI as a process

describe("recover refused on CloudStack (loopback API, the CLI as a process)", () => {
  test("the VM still runs on a host that is Up: exit 3, the VM stays where it was", async () => {
    const cs = await startCloud();
    try {
      const be = backendFor(cs);
      const [h1, h2] = cs.hostIds;
      const protection: ProtectionRecord = { version: 1, backend: "cloudstack", primaryHost: h1, recoveryHosts: [h2], policy: withPolicyDefaults({ repository: "primary", keepLast: 2, maxIntervalSeconds: 600 }) };
      await be.defineVm({ name: "app", memoryMiB: 1024, vcpus: 1, cloudstack: { zoneId: cs.zoneId, serviceOfferingId: cs.offeringId, templateId: cs.templateId }, protection }, h1);
      await be.startVm({ name: "app", host: h1 });
      await be.takeSnapshot({ name: "app", host: h1 }, { includeMemory: true, repository: "primary" });
      const env = { CLOUDSTACK_API_URL: cs.url, CLOUDSTACK_API_KEY: cs.apiKey, CLOUDSTACK_SECRET_KEY: cs.secretKey, CLOUDSTACK_ZONE: cs.zoneId };
      const r = await runCli(["recover", "app", "--backend", "cloudstack", "--hosts", `${h1},${h2}`, "--repository", "primary", "--json"], { env, timeoutMs: 60_000 });
      expect(r.code).toBe(EXIT.refused);
      expect(r.json).toMatchObject({ ok: false, refused: true, exitCode: 3 });
      expect(r.json.error).toMatch(/split brain/);
      expect(cs.vmByName("app")).toMatchObject({ state: "Running", hostid: h1 });
      expect(cs.commandCount("revertToVMSnapshot")).toBe(0);
      expect(r.stdout + r.stderr).not.toContain(cs.secretKey);
    } finally {
      await cs.stop();
    }
  }, 60_000);
});
