import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { DEFAULT_POLICY, SnapshotPolicy, validatePolicy, validateProtection, withPolicyDefaults } from "../../core/policy";
import { nextIntervalSeconds } from "../../core/interval";
import { domainInputErrors, repositoryErrors } from "../../pulumi/providers/domainImpl";
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
    expect(repositoryErrors(path.join(file, "repo"))).toEqual([{ field: "snapshotPolicy.repository", message: expect.stringMatching(/not a directory/) }]);
    expect(repositoryErrors("relative/repo")).toEqual([{ field: "snapshotPolicy.repository", message: expect.stringMatching(/absolute/) }]);
    expect(repositoryErrors(path.join(dir, "new", "repo"))).toEqual([]); // can be created
    if (process.getuid?.() !== 0) {
      fs.chmodSync(dir, 0o500);
      expect(fields(repositoryErrors(path.join(dir, "repo")))).toEqual(["snapshotPolicy.repository"]);
    }
    fs.rmSync(dir, { recursive: true, force: true });
  });

  test("Domain inputs: memory, vCPUs, disk, and the protection record together", () => {
    const errs = domainInputErrors({
      connection: { kind: "libvirt" },
      spec: { name: "ok-name", memoryMiB: 8, vcpus: 0, protection: { version: 1, backend: "libvirt", primaryHost: A, recoveryHosts: [B], policy: { ...good, keepLast: 0 } } },
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
