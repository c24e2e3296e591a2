import {
  CloudStackConfigError,
  loadCloudStackConfig,
  redactedConfig,
  resolveCloudStackConfig,
  validateCloudStackConfig,
} from "../../hypervisor/cloudstack/config";
import { toCloudStackSnapshotPolicy } from "../../hypervisor/cloudstack/snapshotPolicy";
import { protectionToTags, tagsToProtection, MAX_TAG_VALUE } from "../../hypervisor/cloudstack/tags";
import { planRecovery, RecoveryFacts } from "../../hypervisor/cloudstack/recovery";
import { CloudStackBackend } from "../../hypervisor/cloudstack/backend";
import { withPolicyDefaults, ProtectionRecord } from "../../core/policy";
import { clientFor, startCloud } from "../support/cloudstack/harness";

const good = { endpoint: "https://cloud.example.com/client/api", apiKey: "key", secretKey: "secret", zone: "z1" };

describe("provider config", () => {
  test("a complete config passes", () => {
    expect(validateCloudStackConfig(good)).toEqual([]);
  });

  test("every problem names its field, and key values are never echoed", () => {
    const errs = validateCloudStackConfig({ endpoint: "ftp://x/y?command=a", apiKey: "", secretKey: "has space", verifyTls: "yes" as unknown as boolean, timeoutMs: -1 });
    const fields = errs.map((e) => e.field);
    expect(fields).toEqual(expect.arrayContaining(["cloudstack.endpoint", "cloudstack.apiKey", "cloudstack.secretKey", "cloudstack.verifyTls", "cloudstack.timeoutMs"]));
    expect(errs.find((e) => e.field === "cloudstack.apiKey")?.message).toMatch(/CLOUDSTACK_API_KEY/);
    expect(JSON.stringify(errs)).not.toContain("has space");
    expect(validateCloudStackConfig({ ...good, endpoint: "https://cloud.example.com/" })[0].message).toMatch(/\/client\/api/);
    expect(validateCloudStackConfig({ ...good, endpoint: undefined })[0]).toMatchObject({ field: "cloudstack.endpoint" });
  });

  test("environment fills what the object leaves out; the object wins", () => {
    const env = {
      CLOUDSTACK_API_URL: "http://10.0.0.1:8080/client/api",
      CLOUDSTACK_API_KEY: "env-key",
      CLOUDSTACK_SECRET_KEY: "env-secret",
      CLOUDSTACK_ZONE: "env-zone",
      CLOUDSTACK_VERIFY_TLS: "false",
      CLOUDSTACK_ASYNC_TIMEOUT_MS: "900000",
    };
    expect(loadCloudStackConfig({ apiKey: "explicit" }, env)).toMatchObject({
      endpoint: "http://10.0.0.1:8080/client/api",
      apiKey: "explicit",
      secretKey: "env-secret",
      zone: "env-zone",
      verifyTls: false,
      asyncTimeoutMs: 900000,
    });
    expect(() => resolveCloudStackConfig({}, {})).toThrow(CloudStackConfigError);
    expect(() => resolveCloudStackConfig({}, {})).toThrow(/cloudstack\.endpoint: is required/);
    expect(redactedConfig(good)).toMatchObject({ apiKey: "<redacted>", secretKey: "<redacted>", endpoint: good.endpoint });
  });

  test("CloudStackBackend.fromConfig reads the environment and works against the loopback server", async () => {
    const cs = await startCloud();
    try {
      const be = CloudStackBackend.fromConfig({}, { pollIntervalMs: 5 }, { CLOUDSTACK_API_URL: cs.url, CLOUDSTACK_API_KEY: cs.apiKey, CLOUDSTACK_SECRET_KEY: cs.secretKey, CLOUDSTACK_ZONE: cs.zoneId });
      expect(await be.hostAlive(cs.hostIds[0])).toBe(true);
      expect(JSON.stringify(be)).not.toContain(cs.secretKey);
    } finally {
      await cs.stop();
    }
  });
});

describe("fixed-interval policy -> createSnapshotPolicy", () => {
  const base = withPolicyDefaults({ repository: "secondary", loadAdaptive: false, includeMemory: false, minIntervalSeconds: 3600, maxIntervalSeconds: 3600, keepLast: 5 });

  test("hourly, daily and weekly map to CloudStack's interval types and schedules", () => {
    expect(toCloudStackSnapshotPolicy(base, "vol-1", { kvmSnapshotEnabled: true, minute: 15 })).toEqual({
      ok: true,
      params: { volumeid: "vol-1", intervaltype: "HOURLY", schedule: "15", maxsnaps: 5, timezone: "UTC" },
    });
    const daily = toCloudStackSnapshotPolicy({ ...base, minIntervalSeconds: 86400 }, "v", { kvmSnapshotEnabled: true, minute: 30, hour: 2, timezone: "Europe/Berlin" });
    expect(daily).toMatchObject({ ok: true, params: { intervaltype: "DAILY", schedule: "30:02", timezone: "Europe/Berlin" } });
    expect(toCloudStackSnapshotPolicy({ ...base, minIntervalSeconds: 604800 }, "v", { kvmSnapshotEnabled: true, dayOfWeek: 7 })).toMatchObject({ params: { intervaltype: "WEEKLY", schedule: "00:00:7" } });
  });

  test("what CloudStack cannot schedule stays with our scheduler, with the reason", () => {
    expect(toCloudStackSnapshotPolicy({ ...base, loadAdaptive: true }, "v", { kvmSnapshotEnabled: true })).toMatchObject({ ok: false, reason: expect.stringMatching(/load-adaptive/) });
    expect(toCloudStackSnapshotPolicy({ ...base, includeMemory: true }, "v", { kvmSnapshotEnabled: true })).toMatchObject({ ok: false, reason: expect.stringMatching(/memory/) });
    expect(toCloudStackSnapshotPolicy(base, "v")).toMatchObject({ ok: false, reason: expect.stringMatching(/kvm.snapshot.enabled/) });
    expect(toCloudStackSnapshotPolicy({ ...base, minIntervalSeconds: 300 }, "v", { kvmSnapshotEnabled: true })).toMatchObject({ ok: false, reason: expect.stringMatching(/300 s/) });
  });

  test("the loopback CloudStack accepts the mapped parameters", async () => {
    const cs = await startCloud({ kvmSnapshotEnabled: true });
    try {
      const c = clientFor(cs);
      const vm = await c.callAsync("deployVirtualMachine", { zoneid: cs.zoneId, serviceofferingid: cs.offeringId, templateid: cs.templateId, name: "pol1" });
      const root = cs.rootVolume(vm.id!);
      const m = toCloudStackSnapshotPolicy({ ...base, minIntervalSeconds: 86400 }, root.id, { kvmSnapshotEnabled: true, hour: 3 });
      if (!m.ok) throw new Error(m.reason);
      const r = await c.call("createSnapshotPolicy", { ...m.params });
      expect(r.snapshotpolicy).toMatchObject({ volumeid: root.id, intervaltype: "DAILY", schedule: "00:03", maxsnaps: 5 });
    } finally {
      await cs.stop();
    }
  });
});

describe("protection record as tags", () => {
  test("round trip, every value within CloudStack's 255-character limit", () => {
    const rec: ProtectionRecord = {
      version: 1,
      backend: "cloudstack",
      primaryHost: "h".repeat(36),
      recoveryHosts: Array.from({ length: 10 }, (_, i) => `host-${i}-${"x".repeat(30)}`),
      policy: withPolicyDefaults({ repository: "primary" }),
    };
    const tags = protectionToTags(rec);
    expect(tags.every((t) => t.value.length <= MAX_TAG_VALUE)).toBe(true);
    expect(tags.length).toBeGreaterThan(3);
    expect(tagsToProtection(tags)).toEqual(rec);
    expect(tagsToProtection(tags.slice(0, -1))).toBeUndefined(); // a missing part is not guessed at
    expect(tagsToProtection([])).toBeUndefined();
  });
});

describe("warm or cold", () => {
  const all: RecoveryFacts = { sameVm: true, vmExists: true, vmSnapshotReady: true, vmSnapshotHasMemory: true, backupReady: true };
  test("warm first whenever it can, with cold as the fallback when a backup exists; cold when warm is impossible; an error that says why when neither", () => {
    expect(planRecovery(all)).toMatchObject({ first: "warm", fallback: "cold" });
    const noBackup = planRecovery({ ...all, backupReady: false });
    expect(noBackup.first).toBe("warm");
    expect("fallback" in noBackup && noBackup.fallback).toBeFalsy();
    expect(planRecovery({ ...all, sameVm: false }).first).toBe("cold");
    expect(planRecovery({ ...all, vmSnapshotHasMemory: false }).first).toBe("cold");
    const none = planRecovery({ ...all, vmExists: false, backupReady: false });
    expect(none.first).toBeUndefined();
    expect(none.reason).toMatch(/original VM no longer exists.*no backed-up copy/);
    expect(planRecovery({ ...all, prefer: "cold" }).first).toBe("cold");
    expect(planRecovery({ ...all, vmSnapshotReady: false, prefer: "warm" })).toMatchObject({ first: undefined, reason: expect.stringMatching(/warm path impossible/) });
  });
});
