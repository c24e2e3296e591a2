/** `pulumi up` never takes over a VM it did not create: it fails naming the VM and leaves it alone. */
import { ensureLab, LabState, cleanupDomains, guestCmdline } from "../../lab/lab";
import { runCli, runId } from "../support/cli";
import { LibvirtBackend } from "../../hypervisor/libvirt/backend";
import { configFlags, exampleStackArgs, labExampleConfig } from "../../lab/exampleStack";

describe("an existing domain with the same name", () => {
  let lab: LabState;
  const vmName = `pvown-${runId()}`;
  let base: string[] = [];

  beforeAll(async () => {
    lab = await ensureLab();
    base = exampleStackArgs(vmName);
  });

  afterAll(async () => {
    await runCli(["stack", "destroy", ...base]);
    await new LibvirtBackend({ pool: lab.hosts.a.pool }).deleteVm({ name: vmName, host: lab.hosts.a.uri }).catch(() => undefined);
    await cleanupDomains(lab.hosts.a.uri, vmName);
  });

  test("up fails with a clear message; the existing VM is not redefined", async () => {
    const A = lab.hosts.a;
    const backend = new LibvirtBackend({ pool: A.pool });
    const before = await backend.defineVm(
      { name: vmName, memoryMiB: 64, vcpus: 1, disk: { sizeMiB: 8, pool: A.pool }, boot: { kernel: lab.guest.kernel, initrd: lab.guest.initrd, cmdline: guestCmdline() } },
      A.uri,
    );
    const up = await runCli(["stack", "up", ...base, ...configFlags(labExampleConfig(lab, vmName))]);
    expect(up.code).toBe(1);
    expect(up.stderr).toContain(`a domain named ${vmName} already exists on ${A.uri}`);
    const after = await backend.findVm(vmName, [A.uri]);
    expect(after).toMatchObject({ id: before.id, memoryMiB: 64, state: "shutoff" });
    expect(after!.protection).toBeUndefined(); // not redefined with our record
  });
});
