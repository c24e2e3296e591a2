/** The policy pack's rules as pure functions (the pack itself is exercised in test/integration/policyPack.test.ts). */
import { withPolicyDefaults, ProtectionRecord } from "../../core/policy";
import {
  VmFacts, checkProtected, checkProtectionValid, checkRecoveryHosts, checkRepositoryOffHost, checkRepositoryQuota,
  checkRetention, checkRpo, checkSingleRepository, checkWarmRecovery, hostIdentity, parseWarmRecovery, vmFacts,
} from "../../pulumi/policy/rules";

const A = "qemu+ssh://hv1.example/system";
const B = "qemu+ssh://hv2.example/system";

function domain(name: string, over: { policy?: object; host?: string; recoveryHosts?: string[]; protect?: boolean } = {}): VmFacts {
  const host = over.host ?? A;
  const recoveryHosts = over.recoveryHosts ?? [B];
  const protection: ProtectionRecord = {
    version: 1, backend: "libvirt", primaryHost: host, recoveryHosts, pool: "default",
    policy: withPolicyDefaults({ repository: "/mnt/pv-repo", ...(over.policy ?? {}) } as any),
  };
  const props = {
    connection: { kind: "libvirt", pool: "default" },
    spec: { name, memoryMiB: 256, vcpus: 1, disk: { sizeMiB: 32 }, ...(over.protect === false ? {} : { protection }) },
    host, recoveryHosts, running: true,
  };
  return vmFacts("pulumi-nodejs:dynamic/protected-vm:Domain", props, `urn:pulumi:s::p::pulumi-nodejs:dynamic/protected-vm:Domain::${name}-vm`, `${name}-vm`)!;
}

test("a default-settings ProtectedVM passes every per-VM rule with default parameters", () => {
  const f = domain("web");
  for (const r of [checkProtected(f), checkProtectionValid(f), checkRpo(f), checkRetention(f), checkRecoveryHosts(f), checkRepositoryOffHost(f), checkWarmRecovery(f, ["web"])]) expect(r).toEqual([]);
});

test("unprotected Domains and other providers' VMs are reported with their URN; exempt ones are not", () => {
  const f = domain("bare", { protect: false });
  expect(checkProtected(f)[0]).toContain(f.urn);
  expect(checkProtected(f, { exempt: ["bar*"] })).toEqual([]);
  const foreign = vmFacts("libvirt:index/domain:Domain", { name: "x" }, "urn:x", "x")!;
  expect(checkProtected(foreign)[0]).toMatch(/libvirt:index\/domain:Domain VM, which has no snapshot policy/);
  expect(vmFacts("random:index:Thing", {}, "urn:y", "y")).toBeUndefined();
});

test("RPO target, retention depth and age", () => {
  expect(checkRpo(domain("a", { policy: { maxIntervalSeconds: 600 } }), { rpoTargetSeconds: 300 })[0]).toMatch(/600 s, above the RPO target of 300 s/);
  expect(checkRetention(domain("a", { policy: { keepLast: 1 } }))[0]).toMatch(/keepLast is 1/);
  // keepLast 3 x min 30 s: the oldest kept is only 60 s old.
  expect(checkRetention(domain("a"), { minOldestAgeSeconds: 600 })[0]).toMatch(/only guarantees a snapshot 60 s old.*keepLast >= 21/);
  expect(checkRetention(domain("a", { policy: { keepLast: 21 } }), { minOldestAgeSeconds: 600 })).toEqual([]);
  expect(checkRetention(domain("a", { policy: { keepLast: 21, maxAgeSeconds: 400 } }), { minOldestAgeSeconds: 600 })[0]).toMatch(/maxAgeSeconds is 400 s/);
});

test("recovery hosts: none, the primary under another spelling, the primary verbatim (validateProtection's message)", () => {
  expect(checkRecoveryHosts(domain("a", { recoveryHosts: [] }))[0]).toMatch(/0 recovery host/);
  expect(checkRecoveryHosts(domain("a", { host: "qemu+ssh://root@HV1.example:22/system", recoveryHosts: ["qemu+tls://hv1.example/system"] }))[0]).toMatch(/under another spelling/);
  expect(checkRecoveryHosts(domain("a", { recoveryHosts: [A] })).join("\n")).toMatch(/recoveryHosts\[0\]: .* is the primary host/);
  expect(hostIdentity("qemu:///session?socket=/lab/a/sock")).not.toBe(hostIdentity("qemu:///session?socket=/lab/b/sock"));
  expect(hostIdentity("qemu:///system")).toBe(hostIdentity("qemu+unix:///system"));
});

test("repository off the primary host", () => {
  expect(checkRepositoryOffHost(domain("a", { policy: { repository: "/var/lib/libvirt/images/snap" } }))[0]).toMatch(/hypervisor's own disk/);
  expect(checkRepositoryOffHost(domain("a"), { sharedMounts: ["/srv/nfs"] })[0]).toMatch(/not under any configured shared mount/);
  expect(checkRepositoryOffHost(domain("a"), { sharedMounts: ["/mnt"] })).toEqual([]);
  expect(checkRepositoryOffHost(domain("a", { policy: { repository: "/tmp/shared/x" } }), { sharedMounts: ["/tmp/shared"] })).toEqual([]);
  const cs = { ...domain("c"), backend: "cloudstack" as const, protection: { ...domain("c").protection!, backend: "cloudstack" as const, policy: { ...domain("c").protection!.policy, repository: "primary" } } };
  expect(checkRepositoryOffHost(cs)[0]).toMatch(/"primary" storage/);
});

test("warm recovery from stack config", () => {
  expect(parseWarmRecovery('["db","web-*"]')).toEqual(["db", "web-*"]);
  expect(parseWarmRecovery("db, cache")).toEqual(["db", "cache"]);
  expect(parseWarmRecovery("true")).toEqual(["*"]);
  expect(parseWarmRecovery(undefined)).toEqual([]);
  const cold = domain("web-1", { policy: { includeMemory: false } });
  expect(checkWarmRecovery(cold, ["web-*"])[0]).toMatch(/includeMemory: false/);
  expect(checkWarmRecovery(cold, ["db"])).toEqual([]);
});

test("stack level: one repository, quota", () => {
  const vms = [domain("a"), domain("b", { policy: { repository: "/mnt/other" } })];
  expect(checkSingleRepository(vms)[0].message).toMatch(/2 different snapshot repositories/);
  expect(checkSingleRepository([domain("a"), domain("b")])).toEqual([]);
  // 3 x (256 + 32) = 864 MiB each.
  expect(checkRepositoryQuota([domain("a"), domain("b")], { quotaMiB: 1000 })[0].message).toMatch(/need up to 1728 MiB.*quota of 1000 MiB/);
  expect(checkRepositoryQuota([domain("a"), domain("b")], { quotas: { "/mnt/pv-repo": 2000 } })).toEqual([]);
});

test("pv-protection-valid reuses validateProtection", () => {
  expect(checkProtectionValid(domain("a", { policy: { keepLast: 0 } }))[0]).toMatch(/snapshotPolicy.keepLast: retention must keep at least 1/);
});
