#!/usr/bin/env node
/**
 * Capture real libvirt XML from this checkout's lab (`bash lab/lab.sh up`, then `npx tsc -p
 * tsconfig.json`) into test/fixtures/domain-xml/lab/: a guest defined through LibvirtBackend
 * (protection metadata, disk, console log; a name with an apostrophe - virsh vol-create-as itself fails on an ampersand), its inactive
 * and live `dumpxml`, `save-image-dumpxml` of a save of it, `virsh metadata`, `pool-dumpxml`.
 * The guest and its files are removed afterwards.
 */
const fs = require("fs");
const path = require("path");
const root = path.resolve(__dirname, "..");
const { LibvirtBackend } = require(path.join(root, "dist/hypervisor/libvirt/backend"));
const { withPolicyDefaults } = require(path.join(root, "dist/core/policy"));
const { readLabState, guestCmdline } = require(path.join(root, "dist/lab/lab"));

async function main() {
  const lab = readLabState();
  const A = lab.hosts.a;
  const out = path.join(root, "test/fixtures/domain-xml/lab");
  fs.mkdirSync(out, { recursive: true });
  const backend = new LibvirtBackend({ pool: A.pool });
  const virsh = backend.virsh;
  const name = process.argv[2] || "pvt-xml-o'brien";
  const save = path.join(lab.repository, "pvt-xml-capture.sav");
  const write = (file, text) => fs.writeFileSync(path.join(out, file), text);
  try {
    await backend.defineVm(
      {
        name,
        memoryMiB: 64,
        vcpus: 1,
        disk: { sizeMiB: 8, pool: A.pool },
        boot: { kernel: lab.guest.kernel, initrd: lab.guest.initrd, cmdline: guestCmdline({ mem: 16 }) },
        protection: { version: 1, backend: "libvirt", primaryHost: A.uri, recoveryHosts: [lab.hosts.b.uri], policy: withPolicyDefaults({ repository: lab.repository }) },
      },
      A.uri,
    );
    write("defined-inactive.xml", (await virsh.run(A.uri, ["dumpxml", "--inactive", name])).stdout);
    await backend.startVm({ name, host: A.uri });
    write("running-live.xml", (await virsh.run(A.uri, ["dumpxml", name])).stdout);
    write("metadata-protection.xml", (await virsh.run(A.uri, ["metadata", name, "--uri", "https://protected-vm.dev/xmlns/protection/1"])).stdout);
    write("pool.xml", (await virsh.run(A.uri, ["pool-dumpxml", A.pool])).stdout);
    await virsh.run(A.uri, ["save", name, save], { timeoutMs: 600_000 });
    write("save-image.xml", (await virsh.run(A.uri, ["save-image-dumpxml", save])).stdout);
  } finally {
    fs.rmSync(save, { force: true });
    await backend.deleteVm({ name, host: A.uri }).catch((e) => console.error("cleanup:", e.message));
  }
  console.log(`wrote ${fs.readdirSync(out).join(", ")} to ${out}`);
}
main().catch((e) => {
  console.error(e);
  process.exit(1);
});
