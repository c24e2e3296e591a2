/**
 * The same ProtectedVM example with `backend: cloudstack`, through a real `pulumi up` against
 * the loopback CloudStack API server (test/support/cloudstackServer.ts; no live CloudStack
 * exists here): deploy, snapshot with memory, host down, warm recovery on the other host,
 * refresh, destroy - and the keys never reach logs or Pulumi state in plain text.
 */
import * as fs from "fs";
import * as path from "path";
import { FakeCloudStack } from "../support/cloudstackServer";
import { startCloud } from "../support/cloudstack/harness";
import { runCli, runId } from "../support/cli";
import { PACKAGE_ROOT } from "../../lib/packageRoot";

function filesUnder(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? filesUnder(path.join(dir, e.name)) : [path.join(dir, e.name)]));
}

describe("ProtectedVM on CloudStack through pulumi up (loopback API server)", () => {
  let cs: FakeCloudStack;
  const vmName = `pvcs-${runId()}`;
  const stacks: string[][] = [];
  const outputs: string[] = [];

  beforeAll(async () => {
    cs = await startCloud({ jobDurationMs: 50 });
  });

  afterAll(async () => {
    for (const base of stacks) await runCli(["stack", "destroy", ...base]);
    await cs.stop();
  });

  function stack(): string[] {
    const base = ["--program", "dist/examples/protected-vm/index.js", "--project", "protected-vm-cloudstack", "--stack", `cs-${runId()}`, "--quiet", "--json"];
    stacks.push(base);
    return base;
  }

  function config(secretKey: string, name = vmName): string[] {
    return [
      ...["backend=cloudstack", `endpoint=${cs.url}`, `zoneId=${cs.zoneId}`, `serviceOfferingId=${cs.offeringId}`, `templateId=${cs.templateId}`,
        `primaryHost=${cs.hostIds[0]}`, `recoveryHost=${cs.hostIds[1]}`, "repository=secondary", `vmName=${name}`].flatMap((c) => ["--config", c]),
      // Secrets from the environment, never from argv (which `ps` shows to every user).
      "--secret-env", "apiKey=PV_TEST_CS_API_KEY", "--secret-env", "secretKey=PV_TEST_CS_SECRET_KEY",
    ];
  }
  const keyEnv = (secretKey: string) => ({ env: { PV_TEST_CS_API_KEY: cs.apiKey, PV_TEST_CS_SECRET_KEY: secretKey } });

  const csEnv = () => ({ CLOUDSTACK_API_URL: cs.url, CLOUDSTACK_API_KEY: cs.apiKey, CLOUDSTACK_SECRET_KEY: cs.secretKey, CLOUDSTACK_ZONE: cs.zoneId });

  test("deploy, snapshot, host down, warm recovery, refresh, destroy", async () => {
    const base = stack();
    const up = await runCli(["stack", "up", ...base, ...config(cs.secretKey)], keyEnv(cs.secretKey));
    outputs.push(up.stdout, up.stderr);
    expect(up.code).toBe(0);
    expect(up.json.outputs.currentHost).toBe(cs.hostIds[0]);
    const vm = cs.vmByName(vmName)!;
    expect(vm).toBeDefined();
    expect(vm.state).toBe("Running");
    expect(cs.tagsOf(vm.id)["protected-vm"]).toBe("true");
    expect(up.json.outputs.newestSnapshotId).toBeTruthy(); // the baseline memory snapshot

    const preview = await runCli(["stack", "preview", ...base]);
    expect(preview.json.changeSummary).toEqual({ same: 5 });

    // The guest's memory at the snapshot, then state that the failure will lose.
    cs.writeGuestMemory(vm.id, "counter=42");
    const sched = await runCli(["scheduler", "--backend", "cloudstack", "--hosts", `${cs.hostIds[0]},${cs.hostIds[1]}`, "--max-snapshots", "1", "--cpu-sample-ms", "10"], { env: csEnv() });
    outputs.push(sched.stdout, sched.stderr);
    expect(sched.code).toBe(0);
    expect(sched.stdout).toMatch(/"event":"snapshot"/);
    cs.writeGuestMemory(vm.id, "counter=99");

    cs.setHostState(cs.hostIds[0], "Down");
    const rec = await runCli(["recover", vmName, "--backend", "cloudstack", "--hosts", `${cs.hostIds[0]},${cs.hostIds[1]}`, "--repository", "secondary", "--json"], { env: csEnv() });
    outputs.push(rec.stdout, rec.stderr);
    expect(rec.code).toBe(0);
    expect(rec.json).toMatchObject({ to: cs.hostIds[1], path: "warm", alreadyRecovered: false });
    const after = cs.vmByName(vmName)!;
    expect(after.state).toBe("Running");
    expect(after.hostid).toBe(cs.hostIds[1]);
    expect(after.guestMemory).toBe("counter=42"); // resumed from the snapshot's memory, not rebooted

    const refresh = await runCli(["stack", "refresh", ...base], keyEnv(cs.secretKey));
    expect(refresh.code).toBe(0);
    // The stack outputs follow the refreshed resources, not only the resources' state.
    expect(refresh.json.outputs.currentHost).toBe(cs.hostIds[1]);
    expect(refresh.json.outputs.newestSnapshotId).toBeTruthy();
    expect(refresh.json.outputs.newestSnapshotId).not.toBe(up.json.outputs.newestSnapshotId); // the scheduler's, newer than the baseline
    const outs = await runCli(["stack", "outputs", ...base]);
    expect(outs.json.outputs.currentHost).toBe(cs.hostIds[1]);
    const res = await runCli(["stack", "resources", ...base]);
    const domain = res.json.resources.find((r: any) => r.type === "pulumi-nodejs:dynamic/protected-vm:Domain");
    expect(domain.outputs.currentHost).toBe(cs.hostIds[1]);
    expect(domain.outputs.connection).toBe("[secret]");

    const destroy = await runCli(["stack", "destroy", ...base]);
    outputs.push(destroy.stdout, destroy.stderr);
    expect(destroy.code).toBe(0);
    expect(cs.vmByName(vmName)).toBeUndefined();
  });

  test("vmName web_1 (not a host name): a second `pulumi up` changes nothing and CloudStack holds one VM", async () => {
    // CloudStack's name= filter compares host names exactly; web_1 is deployed with a generated
    // host name and web_1 as display name, and must still be found (by keyword + display name).
    const name = "web_1";
    cs.setHostState(cs.hostIds[0], "Up"); // the test before left the primary host Down
    const base = stack();
    const up = await runCli(["stack", "up", ...base, ...config(cs.secretKey, name)], keyEnv(cs.secretKey));
    outputs.push(up.stdout, up.stderr);
    expect(up.code).toBe(0);
    expect(cs.vmsByName(name)).toHaveLength(1);
    const [vm] = cs.vmsByName(name);
    expect(vm).toMatchObject({ displayname: name, state: "Running", hostid: cs.hostIds[0] });
    expect(vm.name).not.toBe(name);
    const deploys = cs.commandCount("deployVirtualMachine");

    const again = await runCli(["stack", "up", ...base]);
    outputs.push(again.stdout, again.stderr);
    expect(again.code).toBe(0);
    expect(again.json.summary.resourceChanges).toEqual({ same: 5 });
    expect(cs.vmsByName(name)).toHaveLength(1);
    expect(cs.commandCount("deployVirtualMachine")).toBe(deploys);

    // refresh finds it too (by name, through the same lookup), and destroy removes it
    const refresh = await runCli(["stack", "refresh", ...base]);
    expect(refresh.code).toBe(0);
    const res = await runCli(["stack", "resources", ...base]);
    const domain = res.json.resources.find((r: any) => r.type === "pulumi-nodejs:dynamic/protected-vm:Domain");
    expect(domain.outputs).toMatchObject({ vmId: vm.id, currentHost: cs.hostIds[0], state: "running" });
    const destroy = await runCli(["stack", "destroy", ...base]);
    expect(destroy.code).toBe(0);
    expect(cs.vmsByName(name)).toHaveLength(0);
  });

  test("a wrong secret key fails with CloudStack's 401, creates nothing and is never printed", async () => {
    const wrong = `wrong-secret-${runId()}`;
    const base = stack();
    const up = await runCli(["stack", "up", ...base, ...config(wrong, `${vmName}-bad`)], keyEnv(wrong));
    outputs.push(up.stdout, up.stderr);
    expect(up.code).toBe(1);
    expect(up.stderr).toMatch(/401/);
    expect(cs.vmByName(`${vmName}-bad`)).toBeUndefined();
    const all = outputs.join("\n");
    expect(all).not.toContain(wrong);
    expect(all).not.toContain(cs.secretKey);
    // Pulumi state (and its backups/history) hold the keys only encrypted.
    for (const f of filesUnder(path.join(PACKAGE_ROOT, ".pulumi-state", ".pulumi"))) {
      const text = fs.readFileSync(f, "utf8");
      expect(text.includes(cs.secretKey) || text.includes(wrong) || text.includes(cs.apiKey)).toBe(false);
    }
  });
});
