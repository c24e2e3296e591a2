/** ProtectedVM's wiring, with Pulumi mocks: which children it declares, with what inputs. */
import * as pulumi from "@pulumi/pulumi";

interface Registered {
  type: string;
  name: string;
  inputs: any;
}
const registered: Registered[] = [];

pulumi.runtime.setMocks(
  {
    newResource(args) {
      registered.push({ type: args.type, name: args.name, inputs: args.inputs });
      const outs: Record<string, unknown> = { ...args.inputs };
      if (args.type.endsWith(":Domain")) Object.assign(outs, { currentHost: args.inputs.host, state: "running", vmId: "uuid-1" });
      if (args.type.endsWith(":Retention")) Object.assign(outs, { newestSnapshotId: "20261126T000000.000Z-00000000", newestSnapshotTime: "2026-11-26T00:00:00.000Z" });
      return { id: `${args.name}-id`, state: outs };
    },
    call: () => ({}),
  },
  "project",
  "stack",
  false,
);

// Loaded after setMocks so resources register against the mocks.
import { ProtectedVM, ProtectedVMArgs } from "../../pulumi/protectedVm";
import { PolicyValidationError } from "../../core/policy";

const A = "qemu:///system";
const B = "qemu+ssh://b.example/system";

function outputOf<T>(o: pulumi.Output<T>): Promise<T> {
  return new Promise((resolve) => o.apply((v) => resolve(v)));
}

const baseArgs: ProtectedVMArgs = {
  memoryMiB: 256,
  disk: { sizeMiB: 32, pool: "vms" },
  boot: { kernel: "/boot/vmlinuz", initrd: "/boot/initrd", cmdline: "console=ttyS0" },
  primaryHost: A,
  recoveryHosts: [B],
  snapshotPolicy: { repository: "/srv/pv-repo", keepLast: 4, minIntervalSeconds: 15 },
};

describe("ProtectedVM wiring", () => {
  beforeEach(() => registered.splice(0));

  test("declares a Domain with the protection record, a baseline Snapshot and Retention, all parented", async () => {
    const vm = new ProtectedVM("web", { ...baseArgs, vmName: "web-1" });
    expect(await outputOf(vm.currentHost)).toBe(A);
    expect(await outputOf(vm.vmName)).toBe("web-1");
    expect(await outputOf(vm.newestSnapshotId)).toBe("20261126T000000.000Z-00000000");
    // Children are parented to the component: their URNs carry its type.
    for (const child of [vm.domain, vm.retention]) {
      expect(await outputOf(child.urn)).toMatch(/::protected-vm:index:ProtectedVM\$pulumi-nodejs:dynamic\/protected-vm:/);
    }

    const types = registered.map((r) => r.type);
    expect(types).toEqual(
      expect.arrayContaining(["protected-vm:index:ProtectedVM", "pulumi-nodejs:dynamic/protected-vm:Domain", "pulumi-nodejs:dynamic/protected-vm:Snapshot", "pulumi-nodejs:dynamic/protected-vm:Retention"]),
    );
    const domain = registered.find((r) => r.type.endsWith(":Domain"))!;
    expect(domain.name).toBe("web-vm");
    expect(domain.inputs.host).toBe(A);
    expect(domain.inputs.recoveryHosts).toEqual([B]);
    expect(domain.inputs.running).toBe(true);
    expect(domain.inputs.connection).toEqual({ kind: "libvirt", pool: "vms" });
    expect(domain.inputs.spec).toMatchObject({ name: "web-1", memoryMiB: 256, vcpus: 1, disk: { sizeMiB: 32, pool: "vms" }, boot: baseArgs.boot });
    // Defaults applied and stored on the VM itself, so the scheduler needs no other database.
    expect(domain.inputs.spec.protection).toEqual({
      version: 1,
      backend: "libvirt",
      primaryHost: A,
      recoveryHosts: [B],
      pool: "vms",
      policy: { repository: "/srv/pv-repo", keepLast: 4, minIntervalSeconds: 15, maxIntervalSeconds: 300, loadAdaptive: true, cpuIdlePercent: 20, cpuBusyPercent: 70, includeMemory: true, onDestroy: "keep", liveSnapshot: "auto" },
    });
    const snapshot = registered.find((r) => r.type.endsWith(":Snapshot"))!;
    expect(snapshot.inputs).toMatchObject({ vmName: "web-1", hosts: [A, B], repository: "/srv/pv-repo", includeMemory: true, keepOnDelete: true });
    const retention = registered.find((r) => r.type.endsWith(":Retention"))!;
    expect(retention.inputs).toMatchObject({ vmName: "web-1", repository: "/srv/pv-repo", keepLast: 4, onDestroy: "keep" });
  });

  test("no baseline snapshot when turned off; VM name defaults to the resource name", async () => {
    const vm = new ProtectedVM("db", { ...baseArgs, baselineSnapshot: false });
    expect(await outputOf(vm.vmName)).toBe("db");
    expect(registered.some((r) => r.type.endsWith(":Snapshot"))).toBe(false);
  });

  test.each([
    [{ snapshotPolicy: { repository: "/r", minIntervalSeconds: 0 } }, "snapshotPolicy.minIntervalSeconds"],
    [{ snapshotPolicy: { repository: "/r", minIntervalSeconds: 900, maxIntervalSeconds: 60 } }, "snapshotPolicy.minIntervalSeconds"],
    [{ snapshotPolicy: { repository: "/r", keepLast: 0 } }, "snapshotPolicy.keepLast"],
    [{ primaryHost: "esx://nope" }, "primaryHost"],
    [{ recoveryHosts: [A] }, "recoveryHosts[0]"],
    [{ vmName: "bad name!" }, "name"],
  ] as [Partial<ProtectedVMArgs>, string][])("invalid %j fails at construction naming %s, declaring nothing", (change, field) => {
    let err: unknown;
    try {
      new ProtectedVM("bad", { ...baseArgs, ...change });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(PolicyValidationError);
    expect((err as PolicyValidationError).errors.map((e) => e.field)).toContain(field);
    expect((err as Error).message).toContain(`${field}:`);
    expect(registered.filter((r) => r.type.endsWith(":Domain"))).toEqual([]);
  });
});
