/** `pulumi up` never takes over a VM it did not create: it fails naming the VM and leaves it alone. */
import { ensureLab, LabState, cleanupDomains, guestCmdline } from "../support/lab";
import { runCli, runId } from "../support/cli";
import { LibvirtBackend } from "../../provider/libvirt/backend";

describe("an existing domain with the same name", () => {
  let lab: LabState;
  const vmName = `pvown-${runId()}`;
  let base: string[] = [];

  beforeAll(async () => {
    lab = await ensureLab();
    base = ["--program", "dist/examples/protected-vm/index.js", "--project", "protected-vm-example", "--stack", vmName, "--quiet", "--json"];
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
    const config = [
      `primaryHost=${A.uri}`, `recoveryHost=${lab.hosts.b.uri}`, `repository=${lab.repository}`, `kernel=${lab.guest.kernel}`,
      `initrd=${lab.guest.initrd}`, `pool=${A.pool}`, `vmName=${vmName}`,
    ].flatMap((c) => ["--config", c]);
    const up = await runCli(["stack", "up", ...base, ...config]);
    expect(up.code).toBe(1);
    expect(up.stderr).toContain(`a domain named ${vmName} already exists on ${A.uri}`);
    const after = await backend.findVm(vmName, [A.uri]);
    expect(after).toMatchObject({ id: before.id, memoryMiB: 64, state: "shutoff" });
    expect(after!.protection).toBeUndefined(); // not redefined with our record
  });
});
