/**
 * Bad input fails at `pulumi preview` with a message naming the field, and `pulumi up` with the
 * same input creates nothing. Two paths: values the component sees at construction, and values
 * that are only known later (Outputs), which the Domain provider's `check` judges.
 */
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { runCli, runId } from "../support/cli";

const A = "qemu:///session?socket=/nonexistent/a-sock";
const B = "qemu:///session?socket=/nonexistent/b-sock";

describe("validation at preview time", () => {
  const repo = fs.mkdtempSync(path.join(os.tmpdir(), "pv-valrepo-"));
  const stacks: string[][] = [];

  afterAll(async () => {
    for (const base of stacks) await runCli(["stack", "destroy", ...base]);
    fs.rmSync(repo, { recursive: true, force: true });
  });

  /** Preview fails naming the field; `up` with the same config fails too and leaves no resource. */
  async function expectRejected(base: string[], config: string[], field: string) {
    const preview = await runCli(["stack", "preview", ...base, ...config]);
    expect(preview.code).toBe(1);
    expect(preview.stderr).toContain(`${field}:`);
    const up = await runCli(["stack", "up", ...base]);
    expect(up.code).toBe(1);
    const res = await runCli(["stack", "resources", ...base]);
    expect(res.json.resources.filter((r: any) => r.type.startsWith("pulumi-nodejs:"))).toEqual([]);
  }

  function stackArgs(program: string, project: string): string[] {
    const base = ["--program", program, "--project", project, "--stack", `val-${runId()}`, "--quiet", "--json"];
    stacks.push(base);
    return base;
  }

  test.each([
    ["keepLast=0", "snapshotPolicy.keepLast"],
    ["minInterval=0", "snapshotPolicy.minIntervalSeconds"],
    ["vmName=not a name", "name"],
    ["primaryHost=vmware://esx1", "primaryHost"],
  ])("component: %s -> preview names %s; up creates nothing", async (bad, field) => {
    const base = stackArgs("dist/examples/protected-vm/index.js", "validation-component");
    const config = [`primaryHost=${A}`, `recoveryHost=${B}`, `repository=${repo}`, "kernel=/k", "initrd=/i", bad].flatMap((c) => ["--config", c]);
    await expectRejected(base, config, field);
  });

  // Issue 14, point 6: inputs preview used to accept. Kernel and initrd exist (any readable file
  // will do for preview), so only the input under test is wrong.
  const kernelOk = ["kernel=/bin/sh", "initrd=/bin/sh"];
  test.each([
    [["repository=/nonexistent/pv-repo"], "snapshotPolicy.repository"],
    [["repository=REPO/../etc"], "snapshotPolicy.repository"],
    [["recoveryHost=qemu:///session?socket=/nonexistent/./a-sock"], "recoveryHosts[0]"],
    [["recoveryHost=qemu+unix:///session?socket=/nonexistent/a-sock"], "recoveryHosts[0]"],
    [["memoryMiB=100000000"], "memoryMiB"],
    [["kernel=/nonexistent/vmlinuz"], "boot.kernel"],
    [["minInterval=Infinity"], "snapshotPolicy.minIntervalSeconds"],
  ])("component (issue 14): %j -> preview names %s; up creates nothing", async (bad, field) => {
    const base = stackArgs("dist/examples/protected-vm/index.js", "validation-component");
    const settings = new Map([`primaryHost=${A}`, `recoveryHost=${B}`, `repository=${repo}`, ...kernelOk, ...bad.map((b) => b.replace("REPO", repo))].map((c) => [c.slice(0, c.indexOf("=")), c] as const));
    const config = [...settings.values()].flatMap((c) => ["--config", c]);
    await expectRejected(base, config, field);
    if (bad[0].startsWith("minInterval")) {
      const again = await runCli(["stack", "preview", ...base]);
      expect(again.stderr).toMatch(/got Infinity/);
    }
  });

  test("component (issue 14): a CloudStack http:// endpoint with keys -> preview names cloudstack.endpoint; up creates nothing", async () => {
    const base = stackArgs("dist/examples/protected-vm/index.js", "validation-component");
    const config = ["backend=cloudstack", "endpoint=http://cloud.example/client/api", "zoneId=z", "serviceOfferingId=o", "templateId=t", "primaryHost=h1", "recoveryHost=h2", "repository=secondary"]
      .flatMap((c) => ["--config", c]);
    const env = { PV_TEST_KEY: "key-value-1", PV_TEST_SECRET: "secret-value-1" };
    const preview = await runCli(["stack", "preview", ...base, ...config, "--secret-env", "apiKey=PV_TEST_KEY", "--secret-env", "secretKey=PV_TEST_SECRET"], { env });
    expect(preview.code).toBe(1);
    expect(preview.stderr).toContain("cloudstack.endpoint:");
    expect(preview.stderr).toMatch(/plain http/);
    const up = await runCli(["stack", "up", ...base], { env });
    expect(up.code).toBe(1);
    const res = await runCli(["stack", "resources", ...base]);
    expect(res.json.resources.filter((r: any) => r.type.startsWith("pulumi-nodejs:"))).toEqual([]);
  });

  test("provider check (issue 14): empty recoveryHosts -> preview names recoveryHosts; up creates nothing", async () => {
    const base = stackArgs(".cache/test-dist/test/support/deferredArgsProgram.js", "validation-deferred");
    const config = [`primaryHost=${A}`, "recoveryHosts=[]", `policy=${JSON.stringify({ repository: repo })}`].flatMap((c) => ["--config", c]);
    await expectRejected(base, config, "recoveryHosts");
  });

  test("a host that does not answer passes preview but fails up before anything is created, naming the host", async () => {
    const base = stackArgs("dist/examples/protected-vm/index.js", "validation-component");
    const config = [`primaryHost=${A}`, `recoveryHost=${B}`, `repository=${repo}`, ...kernelOk].flatMap((c) => ["--config", c]);
    const preview = await runCli(["stack", "preview", ...base, ...config]);
    expect(preview.code).toBe(0);
    const up = await runCli(["stack", "up", ...base]);
    expect(up.code).toBe(1);
    expect(up.stderr).toMatch(/host: qemu:\/\/\/session\?socket=\/nonexistent\/a-sock does not answer/);
    expect(up.stderr).toMatch(/nothing was created/);
    const res = await runCli(["stack", "resources", ...base]);
    expect(res.json.resources.filter((r: any) => r.type.startsWith("pulumi-nodejs:"))).toEqual([]);
  });

  test.each([
    [{ repository: "/etc/passwd/pv-repo" }, "snapshotPolicy.repository"],
    [{ repository: "REPO", minIntervalSeconds: 120, maxIntervalSeconds: 60 }, "snapshotPolicy.minIntervalSeconds"],
    [{ repository: "REPO", keepLast: 0 }, "snapshotPolicy.keepLast"],
  ])("provider check: %j -> preview names %s; up creates nothing", async (policy, field) => {
    const base = stackArgs(".cache/test-dist/test/support/deferredArgsProgram.js", "validation-deferred");
    const json = JSON.stringify(policy).replace("REPO", repo);
    const config = [`primaryHost=${A}`, `recoveryHost=${B}`, `policy=${json}`].flatMap((c) => ["--config", c]);
    await expectRejected(base, config, field);
  });
});
