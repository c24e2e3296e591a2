/**
 * Secrets never appear in any process's arguments: `ps -eo args` is sampled every 50 ms during a
 * real `protected-vm stack up` (CloudStack example against the loopback API server) whose keys
 * come from the environment; no sample may contain a key. `--secret k=v` itself is refused.
 */
import { execFile } from "child_process";
import { FakeCloudStack } from "../support/cloudstackServer";
import { startCloud } from "../support/cloudstack/harness";
import { runCli, runId } from "../support/cli";

function psArgs(): Promise<string> {
  return new Promise((resolve) => execFile("ps", ["-eo", "args"], { maxBuffer: 16 * 1024 * 1024 }, (_e, out) => resolve(String(out ?? ""))));
}

describe("secrets stay out of argv", () => {
  let cs: FakeCloudStack;
  const stacks: string[][] = [];
  beforeAll(async () => {
    cs = await startCloud({ jobDurationMs: 50 });
  });
  afterAll(async () => {
    for (const base of stacks) await runCli(["stack", "destroy", ...base], { env: { PV_TEST_CS_API_KEY: cs.apiKey, PV_TEST_CS_SECRET_KEY: cs.secretKey } });
    await cs.stop();
  });

  test("no key in any `ps` sample during stack up; the VM is created with them", async () => {
    const vmName = `pvsec-${runId()}`;
    const base = ["--program", "dist/examples/protected-vm/index.js", "--project", "protected-vm-secrets", "--stack", `sec-${runId()}`, "--quiet", "--json"];
    stacks.push(base);
    const config = ["backend=cloudstack", `endpoint=${cs.url}`, `zoneId=${cs.zoneId}`, `serviceOfferingId=${cs.offeringId}`, `templateId=${cs.templateId}`,
      `primaryHost=${cs.hostIds[0]}`, `recoveryHost=${cs.hostIds[1]}`, "repository=secondary", `vmName=${vmName}`].flatMap((c) => ["--config", c]);

    let sampling = true;
    let samples = 0;
    const leaks: string[] = [];
    const sampler = (async () => {
      while (sampling) {
        const out = await psArgs();
        samples++;
        for (const line of out.split("\n")) if (line.includes(cs.secretKey) || line.includes(cs.apiKey)) leaks.push(line.slice(0, 200));
        await new Promise((r) => setTimeout(r, 50));
      }
    })();
    const up = await runCli(["stack", "up", ...base, ...config, "--secret-env", "apiKey=PV_TEST_CS_API_KEY", "--secret-env", "secretKey=PV_TEST_CS_SECRET_KEY"], {
      env: { PV_TEST_CS_API_KEY: cs.apiKey, PV_TEST_CS_SECRET_KEY: cs.secretKey },
    });
    sampling = false;
    await sampler;
    expect(up.stderr).not.toContain(cs.secretKey);
    expect(up.code).toBe(0);
    expect(cs.vmByName(vmName)?.state).toBe("Running"); // the keys did reach the provider
    expect(samples).toBeGreaterThan(20);
    expect(leaks).toEqual([]);
  });

  test("--secret k=v is refused with exit 2 before anything runs, and the value is not echoed", async () => {
    const r = await runCli(["stack", "preview", "--program", "dist/examples/protected-vm/index.js", "--stack", `sec-${runId()}`, "--secret", "secretKey=do-not-echo-me"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--secret-env/);
    expect(r.stderr).not.toContain("do-not-echo-me");
  });
});
