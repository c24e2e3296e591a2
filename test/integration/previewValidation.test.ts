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
