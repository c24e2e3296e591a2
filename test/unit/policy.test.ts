import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { DEFAULT_POLICY, hostIdentity, repositoryPathErrors, SnapshotPolicy, validatePolicy, validateProtection, withPolicyDefaults } from "../../core/policy";
import { nextIntervalSeconds } from "../../core/interval";
import { cleartextEndpointErrors, domainInputErrors, repositoryErrors } from "../../pulumi/providers/domainImpl";
import { snapshotsToDelete } from "../../core/retention";
import type { SnapshotRecord } from "../../core/model";

const A = "qemu:///system";
const B = "qemu+ssh://hostb.example/system";
const good = withPolicyDefaults({ repository: "/srv/pv-repo" });

function fields(errs: { field: string }[]) {
  return errs.map((e) => e.field);
}

describe("policy validation names the bad field", () => {
  test("a default policy is valid", () => {
    expect(validatePolicy(good)).toEqual([]);
    expect(validateProtection({ backend: "libvirt", name: "web-1", primaryHost: A, recoveryHosts: [B], policy: good })).toEqual([]);
  });

  test.each([
    [{ minIntervalSeconds: 0 }, "snapshotPolicy.minIntervalSeconds", /> 0/],
    [{ minIntervalSeconds: -5 }, "snapshotPolicy.minIntervalSeconds", /> 0/],
    [{ maxIntervalSeconds: 0 }, "snapshotPolicy.maxIntervalSeconds", /> 0/],
    [{ minIntervalSeconds: 600, maxIntervalSeconds: 60 }, "snapshotPolicy.minIntervalSeconds", /must not exceed maxIntervalSeconds/],
    [{ keepLast: 0 }, "snapshotPolicy.keepLast", /at least 1/],
    [{ keepLast: 1.5 }, "snapshotPolicy.keepLast", /at least 1/],
    [{ maxAgeSeconds: 10, maxIntervalSeconds: 60 }, "snapshotPolicy.maxAgeSeconds", /shorter than maxIntervalSeconds/],
    [{ cpuIdlePercent: 80, cpuBusyPercent: 50 }, "snapshotPolicy.cpuIdlePercent", /below cpuBusyPercent/],
    [{ cpuBusyPercent: 150 }, "snapshotPolicy.cpuBusyPercent", /0\.\.100/],
    [{ repository: "" }, "snapshotPolicy.repository", /must name/],
    [{ onDestroy: "shred" as never }, "snapshotPolicy.onDestroy", /keep/],
    [{ liveSnapshot: "always" as never }, "snapshotPolicy.liveSnapshot", /"auto" or "never"/],
  ] as [Partial<SnapshotPolicy>, string, RegExp][])("%j -> %s", (change, field, message) => {
    const errs = validatePolicy({ ...good, ...change });
    const e = errs.find((x) => x.field === field);
    expect(e).toBeDefined();
    expect(e!.message).toMatch(message);
  });

  test("unknown host URIs and a recovery host equal to the primary", () => {
    const errs = validateProtection({ backend: "libvirt", name: "web-1", primaryHost: "http://not-libvirt", recoveryHosts: [A, "hostb"], policy: good });
    expect(fields(errs)).toEqual(["primaryHost", "recoveryHosts[1]"]);
    const same = validateProtection({ backend: "libvirt", name: "web-1", primaryHost: A, recoveryHosts: [A], policy: good });
    expect(same).toEqual([{ field: "recoveryHosts[0]", message: expect.stringMatching(/is the primary host/) }]);
  });

  test("VM names that are not valid domain names", () => {
    for (const name of ["", "-x", "a b", "a/b", "x".repeat(64), "vm;rm -rf"]) {
      expect(fields(validateProtection({ backend: "libvirt", name, primaryHost: A, recoveryHosts: [B], policy: good }))).toEqual(["name"]);
    }
  });

  test("a repository that is not writable, or not absolute", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "pv-ro-"));
    const file = path.join(dir, "a-file");
    fs.writeFileSync(file, "");
    expect(repositoryErrors(file)).toEqual([{ field: "snapshotPolicy.repository", message: expect.stringMatching(/not a directory/) }]);
    expect(repositoryPathErrors("relative/repo")).toEqual([{ field: "snapshotPolicy.repository", message: expect.stringMatching(/absolute/) }]);
    // Missing: refused, not created (an unmounted share would silently become a local folder).
    expect(repositoryErrors(path.join(dir, "new", "repo"))).toEqual([{ field: "snapshotPolicy.repository", message: expect.stringMatching(/does not exist.*mounted/) }]);
    expect(repositoryErrors(dir)).toEqual([]);
    if (process.getuid?.() !== 0) {
      fs.chmodSync(dir, 0o500);
      expect(fields(repositoryErrors(path.join(dir, "repo")))).toEqual(["snapshotPolicy.repository"]);
    }
    fs.rmSync(dir, { recursive: true, force: true });
  });

  test("Domain inputs: memory, vCPUs, disk, and the protection record together", () => {
    const errs = domainInputErrors({
      connection: { kind: "libvirt" },
      spec: { name: "ok-name", memoryMiB: 8, vcpus: 0, protection: { version: 1, backend: "libvirt", primaryHost: A, recoveryHosts: [B], policy: { ...good, repository: os.tmpdir(), keepLast: 0 } } },
      host: A,
      recoveryHosts: [B],
      running: true,
    });
    expect(fields(errs)).toEqual(["memoryMiB", "vcpus", "disk", "snapshotPolicy.keepLast"]);
  });

  test("CloudStack repository must be primary or secondary", () => {
    const errs = validateProtection({ backend: "cloudstack", name: "vm1", primaryHost: "host-1", recoveryHosts: ["host-2"], policy: { ...good, repository: "/srv" } });
    expect(fields(errs)).toEqual(["snapshotPolicy.repository"]);
  });
});

describe("bad input the issue found accepted at preview (issue 14, point 6)", () => {
  const protect = (over: Partial<Parameters<typeof validateProtection>[0]>) =>
    validateProtection({ backend: "libvirt", name: "web-1", primaryHost: A, recoveryHosts: [B], policy: good, ...over });
  const repoDir = fs.mkdtempSync(path.join(os.tmpdir(), "pv-val-"));
  afterAll(() => fs.rmSync(repoDir, { recursive: true, force: true }));

  test.each([
    ["qemu:///session?socket=/lab/a/sock", "qemu:///session?socket=/lab/./a/sock"],
    ["qemu:///session?socket=/lab/a/sock", "qemu+unix:///session?socket=/lab/a/sock"],
    ["qemu+ssh://root@kvm1:22/system", "qemu+ssh://KVM1/system"],
    ["qemu+ssh://kvm1.example/system", "qemu+tls://KVM1.example.:16514/system"],
    ["qemu:///system", "qemu+unix:///system"],
  ])("%s and %s are one host: refused as a recovery host, naming the field", (primary, recovery) => {
    expect(hostIdentity(primary)).toBe(hostIdentity(recovery));
    const errs = protect({ primaryHost: primary, recoveryHosts: [recovery] });
    expect(errs).toEqual([{ field: "recoveryHosts[0]", message: expect.stringMatching(/primary host .* under another spelling/) }]);
  });

  test("different lab sockets and different machines stay different hosts; a repeated recovery host is named", () => {
    expect(protect({ primaryHost: "qemu:///session?socket=/lab/a/sock", recoveryHosts: ["qemu:///session?socket=/lab/b/sock"] })).toEqual([]);
    expect(fields(protect({ recoveryHosts: [B, "qemu+ssh://root@HOSTB.example/system"] }))).toEqual(["recoveryHosts[1]"]);
  });

  test("empty recoveryHosts", () => {
    expect(protect({ recoveryHosts: [] })).toEqual([{ field: "recoveryHosts", message: expect.stringMatching(/at least one/) }]);
  });

  test("a repository with .. is refused (libvirt)", () => {
    expect(protect({ policy: { ...good, repository: "/srv/pv/../etc" } })).toEqual([{ field: "snapshotPolicy.repository", message: expect.stringMatching(/\.\./) }]);
  });

  test("an Infinity interval is reported as Infinity, not null", () => {
    const e = validatePolicy({ ...good, minIntervalSeconds: Infinity }).find((x) => x.field === "snapshotPolicy.minIntervalSeconds");
    expect(e?.message).toMatch(/got Infinity$/);
  });

  const domain = (spec: Record<string, unknown>, host = A) =>
    domainInputErrors({
      connection: { kind: "libvirt" },
      spec: { name: "web-1", memoryMiB: 128, vcpus: 1, disk: { sizeMiB: 16 }, protection: { version: 1, backend: "libvirt", primaryHost: host, recoveryHosts: [B], policy: { ...good, repository: repoDir } }, ...spec } as any,
      host,
      recoveryHosts: [B],
      running: true,
    });

  test("memoryMiB 1e8 is above the upper bound, with the reason", () => {
    expect(domain({ memoryMiB: 1e8 })).toEqual([{ field: "memoryMiB", message: expect.stringMatching(/above 1048576 MiB.*phys-bits/) }]);
    expect(domain({ memoryMiB: 1024 * 1024 })).toEqual([]);
  });

  test("a disk image that does not exist on this machine; a kernel missing on a local host", () => {
    expect(domain({ disk: { sizeMiB: 16, image: path.join(repoDir, "nope.qcow2") } })).toEqual([{ field: "disk.image", message: expect.stringMatching(/does not exist/) }]);
    expect(fields(domain({ boot: { kernel: "/nonexistent/vmlinuz", initrd: "/nonexistent/initrd" } }))).toEqual(["boot.kernel", "boot.initrd"]);
    // On a remote host the kernel is the host's file: only `up` can tell.
    expect(domain({ boot: { kernel: "/nonexistent/vmlinuz" } }, "qemu+ssh://hosta.example/system")).toEqual([]);
  });

  test("a CloudStack http:// endpoint with keys is refused (loopback excepted)", () => {
    expect(cleartextEndpointErrors({ endpoint: "http://cloud.example/client/api", apiKey: "k", secretKey: "s" })).toEqual([{ field: "cloudstack.endpoint", message: expect.stringMatching(/plain http.*https/) }]);
    expect(cleartextEndpointErrors({ endpoint: "https://cloud.example/client/api", apiKey: "k", secretKey: "s" })).toEqual([]);
    expect(cleartextEndpointErrors({ endpoint: "http://127.0.0.1:8080/client/api", apiKey: "k", secretKey: "s" })).toEqual([]);
  });
});

describe("the paper's load-adaptive interval", () => {
  const p = withPolicyDefaults({ repository: "/r", minIntervalSeconds: 10, maxIntervalSeconds: 100, cpuIdlePercent: 20, cpuBusyPercent: 70 });
  test("short when idle, long when busy, linear between, within bounds", () => {
    expect(nextIntervalSeconds(0, p)).toBe(10);
    expect(nextIntervalSeconds(20, p)).toBe(10);
    expect(nextIntervalSeconds(45, p)).toBeCloseTo(55);
    expect(nextIntervalSeconds(70, p)).toBe(100);
    expect(nextIntervalSeconds(100, p)).toBe(100);
    expect(nextIntervalSeconds(NaN, p)).toBe(10);
  });
  test("fixed interval when load adaptation is off", () => {
    expect(nextIntervalSeconds(95, { ...p, loadAdaptive: false })).toBe(10);
  });
  test("defaults are documented values", () => {
    expect(DEFAULT_POLICY).toMatchObject({ minIntervalSeconds: 30, maxIntervalSeconds: 300, keepLast: 3, includeMemory: true, onDestroy: "keep", liveSnapshot: "auto" });
  });
});

describe("retention", () => {
  const now = new Date("2026-11-26T12:00:00Z");
  const snap = (id: string, minutesAgo: number, complete = true): SnapshotRecord => ({
    id, vm: "vm", backend: "libvirt", host: A, createdAt: new Date(now.getTime() - minutesAgo * 60_000).toISOString(),
    includesMemory: true, bytes: 1, storedBytes: 1, complete, location: id,
  });
  test("keeps the newest keepLast complete snapshots", () => {
    const all = [snap("s1", 50), snap("s2", 40), snap("s3", 30), snap("s4", 20)];
    expect(snapshotsToDelete(all, { keepLast: 2 }, now).map((s) => s.id).sort()).toEqual(["s1", "s2"]);
  });
  test("deletes by age but never the newest complete one", () => {
    const all = [snap("old1", 300), snap("old2", 200)];
    expect(snapshotsToDelete(all, { keepLast: 5, maxAgeSeconds: 60 }, now).map((s) => s.id)).toEqual(["old1"]);
  });
  test("incomplete snapshots: young ones may still be written, old ones are debris", () => {
    const all = [snap("done", 5), snap("writing", 1, false), snap("debris", 120, false)];
    expect(snapshotsToDelete(all, { keepLast: 3 }, now).map((s) => s.id)).toEqual(["debris"]);
  });
});
